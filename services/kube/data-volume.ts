/**
 * `edgefl manifests --data-volume …`: each edge node's own data mounted into its trainer, read
 * only, with EDGEFL_NODE_DATA pointing at it and EDGEFL_PARTITION=none (all of it is the
 * node's). Trainers are pinned to their machine (edgePlacement), so a hostPath is that
 * machine's directory; a PersistentVolumeClaim is one claim per node.
 *
 * Knative refuses both volume kinds unless enabled in knative-serving/config-features:
 * kubernetes.podspec-persistent-volume-claim or kubernetes.podspec-volumes-hostpath.
 */
import { ENV } from '../shared/config.js';

export type DataVolume = { kind: 'hostPath'; path: string } | { kind: 'pvc'; claim: string };

/** Where the node's data appears inside the trainer container. */
export const NODE_DATA_MOUNT = '/data/node';
const VOLUME_NAME = 'node-data';

/**
 * `hostPath:/srv/edgefl/data` (the same path on every edge machine) or `pvc:NAME` (claim
 * NAME-node-<i> for node i; `{node}` in NAME places the number elsewhere).
 */
export function parseDataVolume(value: string): DataVolume {
  const [kind, ...rest] = value.split(':');
  const arg = rest.join(':');
  if (kind === 'hostPath' && arg.startsWith('/') && !arg.split('/').includes('..')) return { kind: 'hostPath', path: arg };
  if (kind === 'pvc' && /^[a-z0-9]([-a-z0-9{}]*[a-z0-9}])?$/.test(arg) && arg.length <= 50) return { kind: 'pvc', claim: arg };
  throw new Error(`--data-volume '${value}' must be hostPath:/absolute/dir or pvc:claim-name (a DNS-1123 name; '{node}' is replaced by the node number)`);
}

const claimFor = (claim: string, node: number) => (claim.includes('{node}') ? claim.replaceAll('{node}', String(node)) : `${claim}-node-${node}`);

interface PodSpecLike {
  volumes?: object[];
  containers: { env?: { name: string; value?: string }[]; volumeMounts?: object[] }[];
}

/** Adds node `node`'s data volume to a trainer's pod spec (in place; returns it for chaining). */
export function mountNodeData<T extends PodSpecLike>(pod: T, volume: DataVolume, node: number): T {
  const source = volume.kind === 'hostPath' ? { hostPath: { path: volume.path, type: 'Directory' } } : { persistentVolumeClaim: { claimName: claimFor(volume.claim, node), readOnly: true } };
  pod.volumes = [...(pod.volumes ?? []), { name: VOLUME_NAME, ...source }];
  const container = pod.containers[0]!;
  container.volumeMounts = [...(container.volumeMounts ?? []), { name: VOLUME_NAME, mountPath: NODE_DATA_MOUNT, readOnly: true }];
  const env = (container.env ?? []).filter((e) => e.name !== ENV.partition && e.name !== ENV.nodeData);
  container.env = [...env, { name: ENV.nodeData, value: NODE_DATA_MOUNT }, { name: ENV.partition, value: 'none' }];
  return pod;
}

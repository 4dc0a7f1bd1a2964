/**
 * Finds edgefl's Knative Services through the Kubernetes API (`EDGEFL_DISCOVERY=kube`,
 * `edgefl status --kube`, benchmarks waiting for scale-to-zero).
 *
 * `@kubernetes/client-node` is loaded lazily: it is a large module graph, only needed in kube
 * mode, and v2.x pulls in undici 8, which cannot load on Node < 22.19. A static import would
 * take every importer down with it (the aggregator in static mode, the whole CLI), so callers
 * get a clear error from `loadKubeClient()` only when they actually use the cluster.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { LABELS, PART_OF } from './constants.js';
import { edgeNodesFromLists, trainersFromList, type EdgeNodeStatus, type KnativeServiceObject, type PodObject, type TrainerEndpoint } from './knative-objects.js';
import { bodyOf, kubeError, KNATIVE_SERVING, KSVC_RESOURCE, KubeClientUnavailableError, KubeDiscoveryError, statusCodeOf } from './kube-errors.js';

export * from './knative-objects.js';
export * from './kube-errors.js';

type KubeClientModule = typeof import('@kubernetes/client-node');

let clientModule: Promise<KubeClientModule> | undefined;

/** Loads @kubernetes/client-node once, turning an engine mismatch into an actionable message. */
export function loadKubeClient(): Promise<KubeClientModule> {
  clientModule ??= import('@kubernetes/client-node').catch((err: unknown) => {
    clientModule = undefined;
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    const hint = major > 22 || (major === 22 && minor >= 19) ? '' : ' (v2.x depends on undici 8, which needs Node >= 22.19)';
    throw new KubeClientUnavailableError(
      `@kubernetes/client-node could not be loaded on Node ${process.versions.node}${hint}: ${(err as Error).message}`,
    );
  });
  return clientModule;
}

/** KubeConfig from $KUBECONFIG / ~/.kube/config, falling back to the in-cluster service account. */
export async function loadDefaultKubeConfig(): Promise<KubeConfig> {
  const { KubeConfig: Config } = await loadKubeClient();
  const kc = new Config();
  kc.loadFromDefault();
  return kc;
}

// ---------------------------------------------------------------------------------------
// API calls.
// ---------------------------------------------------------------------------------------

async function listKnativeServices(kc: KubeConfig, namespace: string, labelSelector: string): Promise<KnativeServiceObject[]> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    const list = await api.listNamespacedCustomObject({ ...KNATIVE_SERVING, namespace, labelSelector });
    return ((list as { items?: KnativeServiceObject[] })?.items ?? []) as KnativeServiceObject[];
  } catch (err) {
    throw kubeError(err, KSVC_RESOURCE, namespace);
  }
}

async function listPods(kc: KubeConfig, namespace: string, labelSelector: string): Promise<{ items: PodObject[]; resourceVersion?: string }> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CoreV1Api);
  try {
    const list = await api.listNamespacedPod({ namespace, labelSelector });
    return { items: (list.items ?? []) as PodObject[], resourceVersion: list.metadata?.resourceVersion };
  } catch (err) {
    throw kubeError(err, 'pods', namespace);
  }
}

const PART_OF_SELECTOR = `${LABELS.partOf}=${PART_OF}`;

/** Trainer Knative Services (label edgefl.dev/role=trainer), their URLs and readiness. */
export async function discoverTrainers(kc: KubeConfig, namespace: string): Promise<TrainerEndpoint[]> {
  return trainersFromList(await listKnativeServices(kc, namespace, `${LABELS.role}=trainer`));
}

/** Serving Knative Services, same shape as trainers (for the aggregator's model push / dashboard). */
export async function discoverServing(kc: KubeConfig, namespace: string): Promise<TrainerEndpoint[]> {
  return trainersFromList(await listKnativeServices(kc, namespace, `${LABELS.role}=serving`));
}

/** Per edge node: its trainer and serving services, readiness, latest revision and pod counts. */
export async function edgeNodeStatus(kc: KubeConfig, namespace: string): Promise<EdgeNodeStatus[]> {
  const selector = `${PART_OF_SELECTOR},${LABELS.role} in (trainer,serving)`;
  const services = await listKnativeServices(kc, namespace, selector);
  // One pod list for all services (grouped by Knative's service label) instead of one per service.
  const pods = await listPods(kc, namespace, `${LABELS.knativeService},${LABELS.role} in (trainer,serving)`);
  return edgeNodesFromLists(services, pods.items);
}

/** Confirms the Knative Service exists, so a typo doesn't read as "already scaled to zero". */
async function assertServiceExists(kc: KubeConfig, namespace: string, service: string): Promise<void> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    await api.getNamespacedCustomObject({ ...KNATIVE_SERVING, namespace, name: service });
  } catch (err) {
    // A Status body naming the object = the object is missing; anything else = the type is missing.
    if (statusCodeOf(err) === 404 && bodyOf(err)?.details?.name === service) {
      throw new KubeDiscoveryError(`Knative Service ${service} not found in ${namespace}`, 404, { cause: err });
    }
    throw kubeError(err, KSVC_RESOURCE, namespace);
  }
}

export interface ScaleToZeroResult {
  waitedMs: number;
}

/**
 * Resolves once no pod of Knative Service `service` exists any more (terminating pods count
 * as present: until they are gone the next request is not a true cold start). Lists, then
 * watches from the list's resourceVersion; when the watch ends early (server close, 30 s
 * inactivity, 410 Gone) it re-lists and watches again until `timeoutMs`.
 */
export async function waitForScaleToZero(
  kc: KubeConfig,
  namespace: string,
  service: string,
  timeoutMs: number,
): Promise<ScaleToZeroResult> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  const labelSelector = `${LABELS.knativeService}=${service}`;
  await assertServiceExists(kc, namespace, service);
  const k8s = await loadKubeClient();
  let remainingPods: string[] = [];
  for (;;) {
    const list = await listPods(kc, namespace, labelSelector);
    const present = new Set(list.items.map((p) => p.metadata?.name).filter((n): n is string => !!n));
    if (present.size === 0) return { waitedMs: Date.now() - started };
    remainingPods = [...present];
    if (Date.now() >= deadline) break;
    const outcome = await watchUntilEmpty(k8s, kc, namespace, labelSelector, list.resourceVersion, present, deadline);
    if (outcome === 'empty') return { waitedMs: Date.now() - started };
    if (outcome === 'timeout') {
      remainingPods = [...present];
      break;
    }
    // 'relist': brief pause so a flapping watch cannot spin.
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now()))));
  }
  throw new KubeDiscoveryError(
    `timed out after ${timeoutMs} ms waiting for ${service} in ${namespace} to scale to zero ` +
      `(${remainingPods.length} pod(s) left: ${remainingPods.join(', ')})`,
  );
}

function watchUntilEmpty(
  k8s: KubeClientModule,
  kc: KubeConfig,
  namespace: string,
  labelSelector: string,
  resourceVersion: string | undefined,
  present: Set<string>,
  deadline: number,
): Promise<'empty' | 'relist' | 'timeout'> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let controller: AbortController | undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      controller?.abort();
      fn();
    };
    const timer = setTimeout(() => finish(() => resolve('timeout')), Math.max(0, deadline - Date.now()));
    const watch = new k8s.Watch(kc);
    watch
      .watch(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
        { labelSelector, resourceVersion, allowWatchBookmarks: true },
        (type: string, obj: PodObject) => {
          const name = obj?.metadata?.name;
          if (type === 'ERROR') return finish(() => resolve('relist')); // e.g. 410 Gone: resourceVersion too old
          if (!name || type === 'BOOKMARK') return;
          if (type === 'DELETED') present.delete(name);
          else present.add(name);
          if (present.size === 0) finish(() => resolve('empty'));
        },
        (err: unknown) => {
          if (settled) return;
          const status = statusCodeOf(err);
          if (status === 401 || status === 403 || status === 404) return finish(() => reject(kubeError(err, 'pods', namespace)));
          finish(() => resolve('relist'));
        },
      )
      .then((c) => {
        controller = c;
        if (settled) c.abort();
      })
      .catch((err: unknown) => finish(() => reject(kubeError(err, 'pods', namespace))));
  });
}

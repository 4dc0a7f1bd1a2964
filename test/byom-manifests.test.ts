import { describe, expect, it } from 'vitest';
import { renderManifests } from '../services/kube/manifests.js';
import { parseDataVolume } from '../services/kube/data-volume.js';
import { runManifestsCommand } from '../services/cli/kube-commands.js';

type Obj = { kind: string; metadata: { name: string }; spec?: { template?: { spec?: { volumes?: any[]; containers: any[] } } } };

const trainers = (objs: object[]) => (objs as Obj[]).filter((o) => o.kind === 'Service' && /trainer/.test(o.metadata.name) && o.spec?.template);
const servings = (objs: object[]) => (objs as Obj[]).filter((o) => o.kind === 'Service' && /serving/.test(o.metadata.name) && o.spec?.template);
const envOf = (o: Obj) => Object.fromEntries(o.spec!.template!.spec!.containers[0].env.map((e: { name: string; value?: string }) => [e.name, e.value]));

describe('manifests --data-volume', () => {
  it("mounts each node's own PersistentVolumeClaim into its trainer only, read-only, with partition none", () => {
    const objs = renderManifests({ nodes: 2, image: 'edgefl:1.0', namespace: 'edgefl', eventing: false, dataVolume: parseDataVolume('pvc:edge-data') });
    const t = trainers(objs);
    expect(t).toHaveLength(2);
    t.forEach((svc, node) => {
      const pod = svc.spec!.template!.spec!;
      expect(pod.volumes).toEqual([{ name: 'node-data', persistentVolumeClaim: { claimName: `edge-data-node-${node}`, readOnly: true } }]);
      expect(pod.containers[0].volumeMounts).toEqual([{ name: 'node-data', mountPath: '/data/node', readOnly: true }]);
      expect(envOf(svc)).toMatchObject({ EDGEFL_NODE_DATA: '/data/node', EDGEFL_PARTITION: 'none' });
    });
    for (const s of servings(objs)) expect(s.spec!.template!.spec!.volumes).toBeUndefined();
  });

  it("mounts the edge machine's hostPath (trainers are pinned to their machine)", () => {
    const objs = renderManifests({ nodes: 1, image: 'edgefl:1.0', namespace: 'edgefl', eventing: false, dataVolume: parseDataVolume('hostPath:/srv/edgefl') });
    expect(trainers(objs)[0]!.spec!.template!.spec!.volumes).toEqual([{ name: 'node-data', hostPath: { path: '/srv/edgefl', type: 'Directory' } }]);
    // Without the flag: no volume, the built-in partition.
    const plain = renderManifests({ nodes: 1, image: 'edgefl:1.0', namespace: 'edgefl', eventing: false });
    expect(trainers(plain)[0]!.spec!.template!.spec!.volumes).toBeUndefined();
    expect(envOf(trainers(plain)[0]!).EDGEFL_NODE_DATA).toBeUndefined();
  });

  it('refuses a malformed volume with the forms it takes', async () => {
    for (const bad of ['hostPath:relative', 'hostPath:/a/../etc', 'pvc:Bad_Name', 'nfs:/x']) expect(() => parseDataVolume(bad)).toThrow(/hostPath:\/absolute\/dir or pvc:claim-name/);
    let err = '';
    const code = await runManifestsCommand(['--data-volume', 'pvc:UPPER'], { stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) } });
    expect(code).toBe(1);
    expect(err).toMatch(/--data-volume 'pvc:UPPER'/);
  });
});

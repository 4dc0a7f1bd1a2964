import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// The same YAML parser @kubernetes/client-node's loadAllYaml wraps; client-node itself cannot be
// imported on Node 20 (undici 8), and its loadAllYaml would also re-type built-in kinds.
import * as yaml from 'js-yaml';
import { DEFAULT_IMAGE, KNATIVE_TUNING, imageName, listGeneratedFiles, renderManifests, validateObject } from '../services/kube/manifests.js';
import { runManifestsCommand } from '../services/cli/kube-commands.js';
import { crossCheck, type Obj } from './helpers/manifest-checks.js';
import { useTmpDirs } from './helpers/tmp-dirs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const knativeDir = path.join(repoRoot, 'knative');

const tmpDir = useTmpDirs('edgefl-knative-');

describe('renderManifests', () => {
  for (const nodes of [1, 3, 5]) {
    for (const eventing of [false, true]) {
      it(`nodes=${nodes} eventing=${eventing}: every object validates and cross-checks`, () => {
        const objects = renderManifests({ nodes, image: 'registry.example/edgefl:v1', namespace: 'fl-test', eventing }) as Obj[];
        for (const o of objects) validateObject(o);
        expect(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'fl-test')).toBe(true);
        expect(objects.length).toBe(1 + 4 + 2 + 2 * nodes + 5 + (eventing ? 1 + nodes + 1 + 1 + nodes : 0));
        crossCheck(objects, nodes, { eventing });
      });
    }
  }

  it('keep-warm: servingMinScale 1 keeps one serving pod, trainers still scale to zero', () => {
    const objects = renderManifests({ nodes: 2, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false, servingMinScale: 1 }) as Obj[];
    crossCheck(objects, 2, { eventing: false, servingMinScale: 1 });
  });

  it('a shorter trainer timeout reaches the revision and the Triggers alike', () => {
    const objects = renderManifests({ nodes: 2, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: true, trainerTimeoutSeconds: 240 }) as Obj[];
    crossCheck(objects, 2, { eventing: true, trainerTimeoutSeconds: 240 });
  });

  it('observability adds three PodMonitors and the dashboard ConfigMap', () => {
    const objects = renderManifests({ nodes: 2, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false, observability: true }) as Obj[];
    expect(objects.filter((o) => o.kind === 'PodMonitor').map((o) => o.metadata.name).sort()).toEqual(['edgefl-aggregator', 'edgefl-functions', 'edgefl-queue-proxy']);
    expect(objects.filter((o) => o.kind === 'ConfigMap')).toHaveLength(1);
    crossCheck(objects, 2, { eventing: false });
  });

  it('rejects bad options', () => {
    const base = { nodes: 3, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false };
    expect(() => renderManifests({ ...base, nodes: 0 })).toThrow(/nodes/);
    expect(() => renderManifests({ ...base, namespace: 'Bad_NS' })).toThrow(/namespace/);
    expect(() => renderManifests({ ...base, servingMinScale: -1 })).toThrow(/servingMinScale/);
    // Mutable or missing tags: a Deployment would silently run new code after a restart.
    expect(() => renderManifests({ ...base, image: 'registry.example/edgefl:latest' })).toThrow(/latest/);
    expect(() => renderManifests({ ...base, image: 'localhost:5000/edgefl' })).toThrow(/explicit version/);
    expect(renderManifests({ ...base, image: 'localhost:5000/edgefl@sha256:abc' })).not.toHaveLength(0);
    // Above the cluster's max revision timeout Knative's webhook refuses the revision.
    expect(() => renderManifests({ ...base, trainerTimeoutSeconds: KNATIVE_TUNING.clusterMaxRevisionTimeoutSeconds + 1 })).toThrow(/max-revision-timeout-seconds/);
    expect(renderManifests({ ...base, trainerTimeoutSeconds: 1800, clusterMaxRevisionTimeoutSeconds: 1800 })).not.toHaveLength(0);
  });

  it('schema validation really rejects broken objects', () => {
    const [ksvc] = (renderManifests({ nodes: 1, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false }) as Obj[]).filter(
      (o) => o.apiVersion === 'serving.knative.dev/v1',
    );
    const broken = structuredClone(ksvc!);
    broken.spec.template.spec.containerConcurrency = 'one';
    expect(() => validateObject(broken)).toThrow(/containerConcurrency/);
    expect(() => validateObject({ apiVersion: 'example.com/v1', kind: 'Thing' })).toThrow(/no schema/);
  });

  it('imageName strips tag or digest but keeps a registry port', () => {
    expect(imageName('ghcr.io/edgefl/edgefl:latest')).toBe('ghcr.io/edgefl/edgefl');
    expect(imageName('localhost:5000/edgefl')).toBe('localhost:5000/edgefl');
    expect(imageName('localhost:5000/edgefl:v2')).toBe('localhost:5000/edgefl');
    expect(imageName('edgefl@sha256:abc')).toBe('edgefl');
  });
});


describe('edgefl manifests CLI', () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } } };
  }

  it('prints the same objects renderManifests returns', async () => {
    const c = io();
    const code = await runManifestsCommand(['--nodes', '2', '--eventing', '--namespace', 'edge', '--image', 'r.example/e:1', '--serving-min-scale', '1'], c.io);
    expect(code, c.err.join('')).toBe(0);
    const printed = yaml.loadAll(c.out.join(''));
    expect(printed).toEqual(renderManifests({ nodes: 2, eventing: true, namespace: 'edge', image: 'r.example/e:1', servingMinScale: 1 }));
  });

  it('--write reproduces knative/', async () => {
    const dir = await tmpDir();
    const c = io();
    expect(await runManifestsCommand(['--write', dir], c.io)).toBe(0);
    for (const f of await listGeneratedFiles(knativeDir)) {
      expect(await fs.readFile(path.join(dir, f), 'utf8'), f).toBe(await fs.readFile(path.join(knativeDir, f), 'utf8'));
    }
  });

  it('usage errors exit 2', async () => {
    for (const argv of [['--nodes', 'x'], ['--bogus'], ['--serving-min-scale', '-1'], ['--nodes', '0']]) {
      const c = io();
      expect(await runManifestsCommand(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err.join('')).not.toBe('');
    }
  });
});

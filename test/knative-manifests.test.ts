import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
// The same YAML parser @kubernetes/client-node's loadAllYaml wraps; client-node itself cannot be
// imported on Node 20 (undici 8), and its loadAllYaml would also re-type built-in kinds.
import * as yaml from 'js-yaml';
import { ENV } from '../services/shared/config.js';
import {
  ANNOTATIONS,
  CONTAINER_PORT,
  DEFAULT_IMAGE,
  DEFAULT_MANIFEST_OPTIONS,
  EVENTING,
  HEALTH_ROUTES,
  KNATIVE_TUNING,
  LABELS,
  NAMES,
  RESOURCES,
  imageName,
  listGeneratedFiles,
  renderKnativeFiles,
  renderManifests,
  validateObject,
  writeKnativeDir,
} from '../services/kube/manifests.js';
import { runManifestsCommand } from '../services/cli/kube-commands.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const knativeDir = path.join(repoRoot, 'knative');
const OUT_OF_DATE = 'knative/ is out of date: run `npx edgefl manifests --write knative/`';

/** Env names the workloads may use besides ENV: those the postgres image defines. */
const STANDARD_ENV = new Set(['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB', 'PGDATA']);
const ENV_NAMES = new Set<string>(Object.values(ENV));

type Obj = Record<string, any>;

const tmpDirs: string[] = [];
async function tmpDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgefl-knative-'));
  tmpDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

async function yamlFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await yamlFiles(dir, rel)));
    else if (e.name.endsWith('.yaml')) out.push(rel);
  }
  return out.sort();
}

async function loadDir(dir: string): Promise<Map<string, Obj[]>> {
  const files = new Map<string, Obj[]>();
  for (const rel of await yamlFiles(dir)) {
    files.set(rel, yaml.loadAll(await fs.readFile(path.join(dir, rel), 'utf8')).filter(Boolean) as Obj[]);
  }
  return files;
}

const isKustomization = (o: Obj) => o.kind === 'Kustomization';

function podSpecOf(o: Obj): Obj | undefined {
  if (o.kind === 'Deployment' || o.kind === 'StatefulSet') return o.spec?.template?.spec;
  if (o.apiVersion === 'serving.knative.dev/v1' && o.kind === 'Service') return o.spec?.template?.spec;
  return undefined;
}

function podLabelsOf(o: Obj): Record<string, string> {
  return o.spec?.template?.metadata?.labels ?? {};
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The cross-checks every rendered set of objects must pass. */
function crossCheck(objects: Obj[], nodes: number, opts: { eventing: boolean; servingMinScale?: number }) {
  const secrets = new Map(objects.filter((o) => o.kind === 'Secret').map((o) => [o.metadata.name, o]));
  const workloads = objects.filter((o) => podSpecOf(o));
  expect(workloads.length).toBeGreaterThan(0);

  for (const w of workloads) {
    const spec = podSpecOf(w)!;
    const isKnative = w.apiVersion === 'serving.knative.dev/v1';
    for (const c of spec.containers as Obj[]) {
      for (const e of (c.env ?? []) as Obj[]) {
        // Env names come from ENV (or are the postgres image's own), so a rename in config.ts shows up here.
        expect(ENV_NAMES.has(e.name) || STANDARD_ENV.has(e.name), `${w.metadata.name}: env ${e.name} is not in ENV`).toBe(true);
        if (isKnative) expect(e.name, 'Knative reserves PORT').not.toBe(ENV.port);
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          const secret = secrets.get(ref.name);
          expect(secret, `${w.metadata.name}: env ${e.name} references missing Secret ${ref.name}`).toBeDefined();
          expect(Object.keys(secret!.stringData ?? secret!.data ?? {})).toContain(ref.key);
        }
      }
      const names = ((c.env ?? []) as Obj[]).map((e) => e.name);
      expect(new Set(names).size, `${w.metadata.name}: duplicate env`).toBe(names.length);
    }

    const role = w.metadata.labels?.[LABELS.role] as string | undefined;
    expect(podLabelsOf(w)[LABELS.role]).toBe(role);
    if (role === 'trainer' || role === 'serving' || role === 'aggregator') {
      const c = spec.containers[0];
      expect(c.ports.map((p: Obj) => p.containerPort)).toEqual([CONTAINER_PORT]);
      expect(c.livenessProbe.httpGet).toEqual({ path: HEALTH_ROUTES[role].live, port: CONTAINER_PORT });
      expect(c.readinessProbe.httpGet).toEqual({ path: HEALTH_ROUTES[role].ready, port: CONTAINER_PORT });
      expect(c.resources).toEqual(RESOURCES[role]);
      expect(c.image).toBe(workloads.find((x) => x.metadata.labels?.[LABELS.role] === 'aggregator')!.spec.template.spec.containers[0].image);
    }
    if (role === 'aggregator') {
      const env = Object.fromEntries((spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
      expect(env[ENV.port]).toBe(String(CONTAINER_PORT));
      expect(env[ENV.discovery]).toBe('kube');
      expect(env[ENV.nodes]).toBe(String(nodes));
    }

    if (w.kind === 'Deployment' || w.kind === 'StatefulSet') {
      expect(matches(w.spec.selector.matchLabels, podLabelsOf(w)), `${w.metadata.name}: selector does not match its pods`).toBe(true);
    }
  }

  // Core Services select exactly the pods of one workload; the StatefulSet's serviceName is headless.
  for (const svc of objects.filter((o) => o.apiVersion === 'v1' && o.kind === 'Service')) {
    const targets = workloads.filter((w) => w.apiVersion !== 'serving.knative.dev/v1' && matches(svc.spec.selector, podLabelsOf(w)));
    expect(targets.length, `Service ${svc.metadata.name} selects ${targets.length} workloads`).toBe(1);
    const ports = (targets[0]!.spec.template.spec.containers as Obj[]).flatMap((c) => c.ports.map((p: Obj) => p.name));
    for (const p of svc.spec.ports) expect(ports).toContain(p.targetPort);
  }
  const sts = objects.find((o) => o.kind === 'StatefulSet')!;
  expect(objects.find((o) => o.kind === 'Service' && o.apiVersion === 'v1' && o.metadata.name === sts.spec.serviceName)?.spec.clusterIP).toBe('None');
  expect(sts.spec.volumeClaimTemplates).toHaveLength(1);

  // Edge nodes: exactly one trainer and one serving per node, pinned to the matching machine.
  const ksvcs = objects.filter((o) => o.apiVersion === 'serving.knative.dev/v1' && o.kind === 'Service');
  expect(ksvcs).toHaveLength(2 * nodes);
  for (let node = 0; node < nodes; node++) {
    for (const role of ['trainer', 'serving'] as const) {
      const name = role === 'trainer' ? NAMES.trainer(node) : NAMES.serving(node);
      const svc = ksvcs.find((o) => o.metadata.name === name);
      expect(svc, `missing ${name}`).toBeDefined();
      const spec = svc!.spec.template.spec;
      const env = Object.fromEntries((spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
      expect(svc!.metadata.labels[LABELS.role]).toBe(role);
      expect(svc!.metadata.labels[LABELS.nodeId]).toBe(String(node));
      expect(podLabelsOf(svc!)[LABELS.nodeId]).toBe(String(node));
      expect(env[ENV.nodeId]).toBe(String(node));
      expect(env[ENV.nodes]).toBe(String(nodes));
      expect(spec.nodeSelector).toEqual({ [LABELS.edgeNode]: env[ENV.nodeId] });
      expect(spec.tolerations).toContainEqual({ key: LABELS.edgeTaint, operator: 'Exists', effect: 'NoSchedule' });
      const ann = svc!.spec.template.metadata.annotations;
      if (role === 'trainer') {
        expect(spec.containerConcurrency).toBe(1);
        expect(spec.timeoutSeconds).toBe(600);
        expect(ann[ANNOTATIONS.minScale]).toBe('0');
        expect(svc!.metadata.labels[LABELS.visibility]).toBe('cluster-local');
        expect(spec.containers[0].args).toEqual(['trainer']);
      } else {
        expect(spec.containerConcurrency).toBe(KNATIVE_TUNING.servingContainerConcurrency);
        expect(ann[ANNOTATIONS.minScale]).toBe(String(opts.servingMinScale ?? 0));
        expect(spec.containers[0].args).toEqual(['serve']);
      }
    }
  }

  // RBAC: read-only on Knative Services, bound to the account the aggregator runs as.
  const role = objects.find((o) => o.kind === 'Role')!;
  expect(role.rules).toEqual([{ apiGroups: ['serving.knative.dev'], resources: ['services'], verbs: ['get', 'list', 'watch'] }]);
  const binding = objects.find((o) => o.kind === 'RoleBinding')!;
  const agg = objects.find((o) => o.kind === 'Deployment')!;
  expect(binding.roleRef.name).toBe(role.metadata.name);
  expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: agg.spec.template.spec.serviceAccountName, namespace: agg.metadata.namespace }]);
  expect(objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === agg.spec.template.spec.serviceAccountName)).toBe(true);

  const triggers = objects.filter((o) => o.kind === 'Trigger');
  if (!opts.eventing) {
    expect(triggers).toHaveLength(0);
    expect(objects.some((o) => o.kind === 'Broker')).toBe(false);
    return;
  }
  expect(objects.filter((o) => o.kind === 'Broker')).toHaveLength(1);
  expect(triggers).toHaveLength(nodes + 1);
  for (let node = 0; node < nodes; node++) {
    const t = triggers.find((o) => o.spec.filter.attributes[EVENTING.nodeAttribute] === String(node));
    expect(t, `no trigger for node ${node}`).toBeDefined();
    expect(t!.spec.filter.attributes.type).toBe(EVENTING.trainType);
    expect(t!.spec.subscriber.ref).toEqual({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: NAMES.trainer(node) });
  }
  for (const t of triggers) {
    // CloudEvents attribute names: lowercase a-z/0-9, at most 20 characters.
    for (const attr of Object.keys(t.spec.filter.attributes)) expect(attr).toMatch(/^[a-z0-9]{1,20}$/);
    expect(t.spec.broker).toBe(EVENTING.broker);
  }
  const ready = triggers.find((o) => o.spec.filter.attributes.type === EVENTING.updateReadyType)!;
  expect(ready.spec.subscriber).toEqual({ ref: { apiVersion: 'v1', kind: 'Service', name: NAMES.aggregator }, uri: EVENTING.aggregatorPath });
  expect(objects.some((o) => o.apiVersion === 'v1' && o.kind === 'Service' && o.metadata.name === NAMES.aggregator)).toBe(true);
  const binding2 = objects.find((o) => o.kind === 'SinkBinding')!;
  expect(binding2.spec.subject).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: agg.metadata.name });
}

describe('renderManifests', () => {
  for (const nodes of [1, 3, 5]) {
    for (const eventing of [false, true]) {
      it(`nodes=${nodes} eventing=${eventing}: every object validates and cross-checks`, () => {
        const objects = renderManifests({ nodes, image: 'registry.example/edgefl:v1', namespace: 'fl-test', eventing }) as Obj[];
        for (const o of objects) validateObject(o);
        expect(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'fl-test')).toBe(true);
        expect(objects.length).toBe(1 + 3 + 2 + 2 * nodes + 5 + (eventing ? 1 + nodes + 1 + 1 : 0));
        crossCheck(objects, nodes, { eventing });
      });
    }
  }

  it('keep-warm: servingMinScale 1 keeps one serving pod, trainers still scale to zero', () => {
    const objects = renderManifests({ nodes: 2, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false, servingMinScale: 1 }) as Obj[];
    crossCheck(objects, 2, { eventing: false, servingMinScale: 1 });
  });

  it('rejects bad options', () => {
    const base = { nodes: 3, image: DEFAULT_IMAGE, namespace: 'edgefl', eventing: false };
    expect(() => renderManifests({ ...base, nodes: 0 })).toThrow(/nodes/);
    expect(() => renderManifests({ ...base, namespace: 'Bad_NS' })).toThrow(/namespace/);
    expect(() => renderManifests({ ...base, servingMinScale: -1 })).toThrow(/servingMinScale/);
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

describe('knative/ directory', () => {
  it('is up to date with the generator', async () => {
    const dir = await tmpDir();
    await writeKnativeDir(dir, DEFAULT_MANIFEST_OPTIONS);
    const expected = await listGeneratedFiles(dir);
    const actual = await listGeneratedFiles(knativeDir);
    expect(actual, OUT_OF_DATE).toEqual(expected);
    for (const rel of expected) {
      const [want, got] = await Promise.all([fs.readFile(path.join(dir, rel), 'utf8'), fs.readFile(path.join(knativeDir, rel), 'utf8')]);
      expect(got, `${OUT_OF_DATE} (${rel} differs)`).toBe(want);
    }
  });

  it('every object validates and the default set cross-checks', async () => {
    const files = await loadDir(knativeDir);
    const all: Obj[] = [];
    for (const [rel, objects] of files) {
      expect(objects.length, `${rel} is empty`).toBeGreaterThan(0);
      for (const o of objects) {
        if (isKustomization(o)) continue;
        expect(() => validateObject(o), rel).not.toThrow();
        all.push(o);
      }
    }
    crossCheck(all, DEFAULT_MANIFEST_OPTIONS.nodes, { eventing: true });
  });

  it('each kustomization lists every file in its directory and nothing missing', async () => {
    const files = await loadDir(knativeDir);
    const kustomizations = [...files].filter(([, objs]) => objs.some(isKustomization));
    expect(kustomizations.map(([rel]) => rel).sort()).toEqual(
      ['base/kustomization.yaml', 'kustomization.yaml', 'overlays/eventing/kustomization.yaml', 'overlays/keep-warm/kustomization.yaml'],
    );
    for (const [rel, [k]] of kustomizations) {
      const dir = path.posix.dirname(rel);
      const resources: string[] = k!.resources;
      for (const r of resources) {
        const target = path.join(knativeDir, dir, r);
        const stat = await fs.stat(target);
        if (stat.isDirectory()) await fs.access(path.join(target, 'kustomization.yaml'));
      }
      const siblings = [...files.keys()].filter((f) => path.posix.dirname(f) === dir && f !== rel).map((f) => path.posix.basename(f));
      expect(resources.filter((r) => r.endsWith('.yaml')).sort(), `${rel} must list every YAML next to it`).toEqual(siblings.sort());
    }
    // The images: entry matches the image the workloads use, so `kustomize edit set image` hits them.
    const [base] = files.get('base/kustomization.yaml')!;
    expect(base!.images).toEqual([{ name: imageName(DEFAULT_IMAGE), newTag: 'latest' }]);
    // Overlays reference base/, never a directory containing themselves (kustomize rejects that cycle).
    for (const o of ['overlays/eventing/kustomization.yaml', 'overlays/keep-warm/kustomization.yaml']) {
      expect(files.get(o)![0]!.resources[0]).toBe('../../base');
    }
  });

  it('keep-warm patch replaces an annotation that exists on every serving service', async () => {
    const [k] = (await loadDir(knativeDir)).get('overlays/keep-warm/kustomization.yaml')!;
    const [patch] = k!.patches;
    const [op] = yaml.load(patch.patch) as Obj[];
    expect(op!.op).toBe('replace');
    const segments = (op!.path as string).split('/').slice(1).map((s) => s.replace('~1', '/'));
    for (const o of renderManifests({ ...DEFAULT_MANIFEST_OPTIONS, eventing: false }) as Obj[]) {
      if (o.metadata?.labels?.[LABELS.role] !== 'serving') continue;
      let cur: any = o;
      for (const s of segments) cur = cur?.[s];
      expect(cur, `${o.metadata.name} lacks ${op!.path}`).toBe('0');
    }
  });

  it('writeKnativeDir removes stale edge-node files and keeps non-generated ones', async () => {
    const dir = await tmpDir();
    await writeKnativeDir(dir, { ...DEFAULT_MANIFEST_OPTIONS, nodes: 5 });
    await fs.writeFile(path.join(dir, 'README.md'), 'keep me');
    await writeKnativeDir(dir, { ...DEFAULT_MANIFEST_OPTIONS, nodes: 2 });
    const files = await listGeneratedFiles(dir);
    expect(files.filter((f) => f.includes('edge-node-'))).toEqual(['base/edge-node-0.yaml', 'base/edge-node-1.yaml']);
    expect(await fs.readFile(path.join(dir, 'README.md'), 'utf8')).toBe('keep me');
    expect(files).toEqual(renderKnativeFiles({ ...DEFAULT_MANIFEST_OPTIONS, nodes: 2 }).map((f) => f.path).sort());
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
      expect(await fs.readFile(path.join(dir, f), 'utf8')).toBe(await fs.readFile(path.join(knativeDir, f), 'utf8'));
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

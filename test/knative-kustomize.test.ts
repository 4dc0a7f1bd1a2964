/**
 * The checked-in knative/ tree: up to date with the generator, every file listed by its
 * kustomization, and, the point of components, base + any set of components renders exactly
 * the objects renderManifests gives for the same options. That is checked with the real
 * `kubectl kustomize` where kubectl is installed, and always with a small re-implementation of
 * the few kustomize features the tree uses, so a machine without kubectl still tests composition.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as yaml from 'js-yaml';
import {
  ANNOTATIONS,
  DEFAULT_IMAGE,
  DEFAULT_MANIFEST_OPTIONS,
  LABELS,
  POSTGRES_IMAGE,
  imageName,
  listGeneratedFiles,
  renderManifests,
  validateObject,
  writeKnativeDir,
  type ManifestOptions,
} from '../services/kube/manifests.js';
import { COMPONENTS } from '../services/kube/layout.js';
import { crossCheck, type Obj } from './helpers/manifest-checks.js';
import { useTmpDirs } from './helpers/tmp-dirs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const knativeDir = path.join(repoRoot, 'knative');
const OUT_OF_DATE = 'knative/ is out of date: run `npx edgefl manifests --write knative/`';
const run = promisify(execFile);

const tmpDir = useTmpDirs('edgefl-kustomize-');

const loadYaml = async (file: string) => yaml.loadAll(await fs.readFile(file, 'utf8')).filter(Boolean) as Obj[];
const isKustomizeFile = (o: Obj) => o.kind === 'Kustomization' || o.kind === 'Component';

async function yamlFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await yamlFiles(dir, rel)));
    else if (e.name.endsWith('.yaml')) out.push(rel);
  }
  return out.sort();
}

// ---- the kustomize subset the tree uses: resources, components, images, inline JSON patches ----

function setImage(objects: Obj[], entry: { name: string; newTag?: string; digest?: string }) {
  for (const o of objects) {
    for (const c of (o.spec?.template?.spec?.containers ?? []) as Obj[]) {
      if (imageName(c.image) === entry.name) c.image = entry.digest ? `${entry.name}@${entry.digest}` : `${entry.name}:${entry.newTag}`;
    }
  }
}

function applyJsonPatch(objects: Obj[], target: Obj, ops: Obj[]) {
  const [labelKey, labelValue] = String(target.labelSelector).split('=');
  for (const o of objects) {
    const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
    if (group !== target.group || version !== target.version || o.kind !== target.kind || o.metadata.labels?.[labelKey!] !== labelValue) continue;
    for (const op of ops) {
      if (op.op !== 'replace') throw new Error(`unsupported patch op ${op.op}`);
      const keys = (op.path as string).split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
      const last = keys.pop()!;
      const parent = keys.reduce((cur: Obj, k) => cur?.[k], o);
      if (!parent || !(last in parent)) throw new Error(`${o.metadata.name} has no ${op.path} to replace`);
      parent[last] = op.value;
    }
  }
}

async function miniKustomize(dir: string): Promise<Obj[]> {
  const [k] = await loadYaml(path.join(dir, 'kustomization.yaml'));
  const objects: Obj[] = [];
  for (const r of (k!.resources ?? []) as string[]) {
    objects.push(...(r.endsWith('.yaml') ? await loadYaml(path.join(dir, r)) : await miniKustomize(path.join(dir, r))));
  }
  for (const c of (k!.components ?? []) as string[]) {
    const [comp] = await loadYaml(path.join(dir, c, 'kustomization.yaml'));
    expect(comp!.kind).toBe('Component');
    for (const r of (comp!.resources ?? []) as string[]) objects.push(...(await loadYaml(path.join(dir, c, r))));
    for (const p of (comp!.patches ?? []) as Obj[]) applyJsonPatch(objects, p.target, yaml.load(p.patch) as Obj[]);
  }
  for (const entry of (k!.images ?? []) as Obj[]) setImage(objects, entry as { name: string });
  return objects;
}

// ---- comparison ----

const keyOf = (o: Obj) => `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const sorted = (objects: Obj[]) => [...objects].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));

let kubectl: string | undefined;
try {
  await run('kubectl', ['version', '--client']);
  kubectl = 'kubectl';
} catch {
  kubectl = undefined;
}

/** Each ready-made overlay, and all components at once, with the options that mean the same. */
const COMPOSITIONS: Array<{ name: string; components: string[]; options: Partial<ManifestOptions> }> = [
  { name: 'base', components: [], options: {} },
  { name: 'eventing', components: ['eventing'], options: { eventing: true } },
  { name: 'keep-warm', components: ['keep-warm'], options: { servingMinScale: 1 } },
  { name: 'observability', components: ['observability'], options: { observability: true } },
  { name: 'all components', components: [...COMPONENTS], options: { eventing: true, servingMinScale: 1, observability: true } },
];

async function compositionDir(components: string[]): Promise<string> {
  const dir = await tmpDir();
  await writeKnativeDir(dir, DEFAULT_MANIFEST_OPTIONS);
  const body = { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['../base'], components: components.map((c) => `../components/${c}`) };
  await fs.mkdir(path.join(dir, 'mine'));
  await fs.writeFile(path.join(dir, 'mine', 'kustomization.yaml'), yaml.dump(body));
  return path.join(dir, 'mine');
}

const expected = (options: Partial<ManifestOptions>) => sorted(renderManifests({ ...DEFAULT_MANIFEST_OPTIONS, eventing: false, ...options }) as Obj[]);

describe('composing knative/ base with components', () => {
  for (const c of COMPOSITIONS) {
    it(`${c.name}: base + components renders what renderManifests renders (kustomize subset)`, async () => {
      const built = sorted(await miniKustomize(await compositionDir(c.components)));
      expect(built).toEqual(expected(c.options));
      crossCheck(built, DEFAULT_MANIFEST_OPTIONS.nodes, { eventing: !!c.options.eventing, servingMinScale: c.options.servingMinScale });
    });

    it.skipIf(!kubectl)(`${c.name}: \`kubectl kustomize\` renders the same`, async () => {
      const { stdout } = await run(kubectl!, ['kustomize', await compositionDir(c.components)], { maxBuffer: 16 << 20 });
      expect(sorted(yaml.loadAll(stdout) as Obj[])).toEqual(expected(c.options));
    });
  }

  it.skipIf(!kubectl)('the checked-in overlays render with `kubectl kustomize`', async () => {
    for (const name of COMPONENTS) {
      const { stdout } = await run(kubectl!, ['kustomize', path.join(knativeDir, 'overlays', name)], { maxBuffer: 16 << 20 });
      const options = COMPOSITIONS.find((c) => c.name === name)!.options;
      expect(sorted(yaml.loadAll(stdout) as Obj[]), name).toEqual(expected(options));
    }
  });
});

describe('knative/ directory', () => {
  it('is up to date with the generator', async () => {
    const dir = await tmpDir();
    await writeKnativeDir(dir, DEFAULT_MANIFEST_OPTIONS);
    const want = await listGeneratedFiles(dir);
    expect(await listGeneratedFiles(knativeDir), OUT_OF_DATE).toEqual(want);
    for (const rel of want) {
      const [a, b] = await Promise.all([fs.readFile(path.join(dir, rel), 'utf8'), fs.readFile(path.join(knativeDir, rel), 'utf8')]);
      expect(b, `${OUT_OF_DATE} (${rel} differs)`).toBe(a);
    }
  });

  it('every object validates', async () => {
    for (const rel of await yamlFiles(knativeDir)) {
      const objects = await loadYaml(path.join(knativeDir, rel));
      expect(objects.length, `${rel} is empty`).toBeGreaterThan(0);
      for (const o of objects) if (!isKustomizeFile(o)) expect(() => validateObject(o), rel).not.toThrow();
    }
  });

  it('each kustomization lists every YAML next to it; overlays are base + one component', async () => {
    const rels = await yamlFiles(knativeDir);
    const kfiles = rels.filter((r) => path.posix.basename(r) === 'kustomization.yaml');
    expect(kfiles).toEqual(
      ['base', ...COMPONENTS.map((c) => `components/${c}`), '', ...COMPONENTS.map((c) => `overlays/${c}`)].map((d) => (d ? `${d}/kustomization.yaml` : 'kustomization.yaml')).sort(),
    );
    for (const rel of kfiles) {
      const dir = path.posix.dirname(rel);
      const [k] = await loadYaml(path.join(knativeDir, rel));
      const siblings = rels.filter((f) => path.posix.dirname(f) === dir && f !== rel).map((f) => path.posix.basename(f));
      expect(((k!.resources ?? []) as string[]).filter((r) => r.endsWith('.yaml')).sort(), `${rel} must list every YAML next to it`).toEqual(siblings.sort());
      if (dir.startsWith('overlays/')) {
        expect(k!.resources).toEqual(['../../base']);
        expect(k!.components).toEqual([`../../components/${path.posix.basename(dir)}`]);
      }
    }
    // images: entries match what the workloads use, so `kustomize edit set image` (e.g. to a digest) hits them.
    const [base] = await loadYaml(path.join(knativeDir, 'base/kustomization.yaml'));
    expect(base!.images).toEqual([
      { name: imageName(DEFAULT_IMAGE), newTag: DEFAULT_IMAGE.split(':').pop() },
      { name: imageName(POSTGRES_IMAGE), newTag: POSTGRES_IMAGE.split(':').pop() },
    ]);
  });

  it('the default image tag is the package version, never latest', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(DEFAULT_IMAGE).toBe(`ghcr.io/edgefl/edgefl:${pkg.version}`);
  });

  it('the keep-warm patch targets an annotation every serving service has', async () => {
    const [k] = await loadYaml(path.join(knativeDir, 'components/keep-warm/kustomization.yaml'));
    const [op] = yaml.load(k!.patches[0].patch) as Obj[];
    expect(op!.path).toBe(`/spec/template/metadata/annotations/${ANNOTATIONS.minScale.replace('/', '~1')}`);
    expect(k!.patches[0].target.labelSelector).toBe(`${LABELS.role}=serving`);
  });
});

/**
 * Kubernetes/Knative manifests for edgefl, built as typed `kubernetes-models` objects.
 *
 * Why code instead of hand-written YAML: the env variable names come from `ENV`, the
 * health routes, labels and resources from ./constants.ts, and every object is schema-validated
 * before it is written, so a rename in the services cannot silently break a deployment.
 * `knative/` in the repository is the rendered default (3 nodes); a test fails when it
 * drifts from what this module produces.
 *
 * Note: `kubernetes-models` and `@kubernetes-models/knative` are devDependencies, so this
 * module is a build-/dev-time tool; the CLI imports it lazily (see services/cli/kube-commands.ts).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import * as yaml from 'js-yaml';
import { Namespace, Secret, Service as CoreService, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1';
import { Broker, Trigger } from '@kubernetes-models/knative/eventing.knative.dev/v1';
import { SinkBinding } from '@kubernetes-models/knative/sources.knative.dev/v1';
import { ENV } from '../shared/config.js';
import {
  ANNOTATIONS,
  CLI_ROLE,
  CONTAINER_PORT,
  DATA_DIR,
  DEFAULT_IMAGE,
  DEFAULT_NAMESPACE,
  DEFAULT_NODES,
  EVENTING,
  HEALTH_ROUTES,
  KNATIVE_TUNING,
  LABELS,
  NAMES,
  NODE_UID,
  PART_OF,
  PARTITION_DEFAULTS,
  POSTGRES_IMAGE,
  RESOURCES,
  SECRET_KEYS,
  type ManifestRole,
} from './constants.js';

export * from './constants.js';

export interface ManifestOptions {
  nodes: number;
  image: string;
  namespace: string;
  /** Include Broker, Triggers and SinkBinding (what overlays/eventing adds). */
  eventing: boolean;
  /** Serving min-scale; 0 (default) scales to zero, 1 keeps one warm pod per node. */
  servingMinScale?: number;
}

export type KnativeDirOptions = Omit<ManifestOptions, 'eventing'>;

export const DEFAULT_MANIFEST_OPTIONS: KnativeDirOptions = {
  nodes: DEFAULT_NODES,
  image: DEFAULT_IMAGE,
  namespace: DEFAULT_NAMESPACE,
  servingMinScale: 0,
};

/** apiVersion/kind → model class, for validation of generated and checked-in objects. */
export const MODEL_CLASSES: Record<string, { new (data: any): { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': CoreService,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'serving.knative.dev/v1/Service': KnativeService,
  'eventing.knative.dev/v1/Broker': Broker,
  'eventing.knative.dev/v1/Trigger': Trigger,
  'sources.knative.dev/v1/SinkBinding': SinkBinding,
};

/** Throws (with the object's kind/name) when `obj` does not match its schema. */
export function validateObject(obj: { apiVersion?: string; kind?: string; metadata?: { name?: string } }): void {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const Model = MODEL_CLASSES[key];
  if (!Model) throw new Error(`no schema known for ${key}`);
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${key} ${obj.metadata?.name ?? '<unnamed>'} is invalid: ${(err as Error).message}`);
  }
}

function checkOptions(opts: KnativeDirOptions): void {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new Error(`nodes must be an integer >= 1; got ${opts.nodes}`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.namespace) || opts.namespace.length > 63) {
    throw new Error(`namespace '${opts.namespace}' is not a valid DNS-1123 label`);
  }
  if (!opts.image || /\s/.test(opts.image)) throw new Error(`image '${opts.image}' is not a valid image reference`);
  const minScale = opts.servingMinScale ?? 0;
  if (!Number.isInteger(minScale) || minScale < 0 || minScale > KNATIVE_TUNING.servingMaxScale) {
    throw new Error(`servingMinScale must be an integer in 0..${KNATIVE_TUNING.servingMaxScale}; got ${minScale}`);
  }
}

function labels(role: ManifestRole, node?: number): Record<string, string> {
  const out: Record<string, string> = {
    [LABELS.partOf]: PART_OF,
    [LABELS.name]: 'edgefl',
    [LABELS.component]: role,
    [LABELS.role]: role,
  };
  if (node !== undefined) out[LABELS.nodeId] = String(node);
  return out;
}

type EnvVar = { name: string; value?: string; valueFrom?: Record<string, unknown> };

const envValue = (name: string, value: string | number): EnvVar => ({ name, value: String(value) });
const envSecret = (name: string, secret: string, key: string, optional = false): EnvVar => ({
  name,
  valueFrom: { secretKeyRef: { name: secret, key, ...(optional ? { optional: true } : {}) } },
});

function httpProbe(pathName: string, failureThreshold: number) {
  return { httpGet: { path: pathName, port: CONTAINER_PORT }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold };
}

const containerSecurity = {
  runAsNonRoot: true,
  runAsUser: NODE_UID,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** Pins a pod to edge machine `node` and tolerates the edge taint that keeps everything else off it. */
function edgePlacement(node: number) {
  return {
    nodeSelector: { [LABELS.edgeNode]: String(node) },
    tolerations: [{ key: LABELS.edgeTaint, operator: 'Exists', effect: 'NoSchedule' }],
  };
}

const databaseUrlEnv = () => envSecret(ENV.databaseUrl, NAMES.databaseSecret, SECRET_KEYS.databaseUrl);

function trainerService(opts: ManifestOptions, node: number): KnativeService {
  const name = NAMES.trainer(node);
  const podLabels = labels('trainer', node);
  return new KnativeService({
    metadata: {
      name,
      namespace: opts.namespace,
      labels: { ...podLabels, [LABELS.visibility]: 'cluster-local' },
    },
    spec: {
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            [ANNOTATIONS.minScale]: '0',
            [ANNOTATIONS.maxScale]: String(KNATIVE_TUNING.trainerMaxScale),
          },
        },
        spec: {
          containerConcurrency: KNATIVE_TUNING.trainerContainerConcurrency,
          timeoutSeconds: KNATIVE_TUNING.trainerTimeoutSeconds,
          ...edgePlacement(node),
          containers: [
            {
              name: 'trainer',
              image: opts.image,
              args: [CLI_ROLE.trainer],
              ports: [{ name: 'http1', containerPort: CONTAINER_PORT }],
              // PORT is reserved in Knative (it injects it), so it is deliberately absent here.
              env: [
                envValue(ENV.nodeId, node),
                envValue(ENV.nodes, opts.nodes),
                envValue(ENV.partition, PARTITION_DEFAULTS.partition),
                envValue(ENV.alpha, PARTITION_DEFAULTS.alpha),
                envValue(ENV.seed, PARTITION_DEFAULTS.seed),
                envValue(ENV.dataDir, DATA_DIR),
                databaseUrlEnv(),
                envSecret(ENV.invokeSecret, NAMES.appSecret, SECRET_KEYS.invokeSecret),
              ],
              resources: RESOURCES.trainer,
              livenessProbe: httpProbe(HEALTH_ROUTES.trainer.live, 3),
              readinessProbe: httpProbe(HEALTH_ROUTES.trainer.ready, 3),
              securityContext: containerSecurity,
            },
          ],
        },
      },
    },
  });
}

function servingService(opts: ManifestOptions, node: number): KnativeService {
  const name = NAMES.serving(node);
  const podLabels = labels('serving', node);
  return new KnativeService({
    metadata: { name, namespace: opts.namespace, labels: podLabels },
    spec: {
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            // 0 = scale to zero (cold start on first request); the keep-warm overlay sets 1.
            [ANNOTATIONS.minScale]: String(opts.servingMinScale ?? 0),
            [ANNOTATIONS.maxScale]: String(KNATIVE_TUNING.servingMaxScale),
          },
        },
        spec: {
          containerConcurrency: KNATIVE_TUNING.servingContainerConcurrency,
          timeoutSeconds: KNATIVE_TUNING.servingTimeoutSeconds,
          ...edgePlacement(node),
          containers: [
            {
              name: 'serving',
              image: opts.image,
              args: [CLI_ROLE.serving],
              ports: [{ name: 'http1', containerPort: CONTAINER_PORT }],
              env: [
                envValue(ENV.nodeId, node),
                envValue(ENV.nodes, opts.nodes),
                envValue(ENV.dataDir, DATA_DIR),
                databaseUrlEnv(),
                // Optional: an empty/missing key list leaves the predict API open (demo setups).
                envSecret(ENV.apiKeys, NAMES.appSecret, SECRET_KEYS.apiKeys, true),
              ],
              resources: RESOURCES.serving,
              livenessProbe: httpProbe(HEALTH_ROUTES.serving.live, 3),
              readinessProbe: httpProbe(HEALTH_ROUTES.serving.ready, 3),
              securityContext: containerSecurity,
            },
          ],
        },
      },
    },
  });
}

function namespaceObjects(opts: ManifestOptions) {
  return [
    new Namespace({
      metadata: {
        name: opts.namespace,
        labels: {
          [LABELS.partOf]: PART_OF,
          // Lets the eventing overlay's SinkBinding inject K_SINK when Knative runs the
          // SinkBinding webhook in inclusion mode; inert otherwise.
          'bindings.knative.dev/include': 'true',
        },
      },
    }),
  ];
}

const PLACEHOLDER = 'CHANGE-ME';

function secretObjects(opts: ManifestOptions) {
  const meta = (name: string) => ({
    name,
    namespace: opts.namespace,
    labels: { [LABELS.partOf]: PART_OF },
    annotations: { 'edgefl.dev/placeholder': `values marked ${PLACEHOLDER} must be replaced before real use` },
  });
  const dbPassword = `${PLACEHOLDER}-postgres-password`;
  return [
    new Secret({
      metadata: meta(NAMES.appSecret),
      type: 'Opaque',
      stringData: {
        [SECRET_KEYS.invokeSecret]: `${PLACEHOLDER}-invoke-secret`,
        [SECRET_KEYS.adminToken]: `${PLACEHOLDER}-admin-token`,
        // Comma-separated; empty means the serving API needs no key.
        [SECRET_KEYS.apiKeys]: '',
      },
    }),
    new Secret({
      metadata: meta(NAMES.postgresSecret),
      type: 'Opaque',
      stringData: {
        [SECRET_KEYS.postgresUser]: 'edgefl',
        [SECRET_KEYS.postgresPassword]: dbPassword,
        [SECRET_KEYS.postgresDb]: 'edgefl',
      },
    }),
    new Secret({
      metadata: meta(NAMES.databaseSecret),
      type: 'Opaque',
      // Short host name: resolves inside the namespace, so the URL survives a namespace change.
      stringData: { [SECRET_KEYS.databaseUrl]: `postgres://edgefl:${dbPassword}@${NAMES.postgres}:5432/edgefl` },
    }),
  ];
}

function postgresObjects(opts: ManifestOptions) {
  const podLabels = labels('postgres');
  const selector = { [LABELS.partOf]: PART_OF, [LABELS.role]: 'postgres' };
  return [
    new CoreService({
      metadata: { name: NAMES.postgres, namespace: opts.namespace, labels: podLabels },
      spec: {
        // Headless: the StatefulSet's stable pod DNS, and the short name still resolves to it.
        clusterIP: 'None',
        selector,
        ports: [{ name: 'postgres', port: 5432, targetPort: 'postgres' }],
      },
    }),
    new StatefulSet({
      metadata: { name: NAMES.postgres, namespace: opts.namespace, labels: podLabels },
      spec: {
        serviceName: NAMES.postgres,
        replicas: 1,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: podLabels },
          spec: {
            containers: [
              {
                name: 'postgres',
                image: POSTGRES_IMAGE,
                ports: [{ name: 'postgres', containerPort: 5432 }],
                env: [
                  envSecret('POSTGRES_USER', NAMES.postgresSecret, SECRET_KEYS.postgresUser),
                  envSecret('POSTGRES_PASSWORD', NAMES.postgresSecret, SECRET_KEYS.postgresPassword),
                  envSecret('POSTGRES_DB', NAMES.postgresSecret, SECRET_KEYS.postgresDb),
                  // A fresh volume has lost+found at its root, which initdb refuses; use a subdir.
                  envValue('PGDATA', '/var/lib/postgresql/data/pgdata'),
                ],
                resources: RESOURCES.postgres,
                readinessProbe: {
                  exec: { command: ['sh', '-c', 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1'] },
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                },
                livenessProbe: {
                  exec: { command: ['sh', '-c', 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1'] },
                  initialDelaySeconds: 30,
                  periodSeconds: 20,
                  timeoutSeconds: 5,
                },
                volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data', labels: { [LABELS.partOf]: PART_OF } },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
          },
        ],
      },
    }),
  ];
}

/**
 * The aggregator is a plain Deployment + ClusterIP Service, not a Knative Service:
 * it runs the federated rounds in a background loop that outlives any single request,
 * it must be a singleton (two instances would both drive the same run), and Knative's
 * request-driven autoscaling/timeouts buy nothing for a process that is always busy.
 */
function aggregatorObjects(opts: ManifestOptions) {
  const name = NAMES.aggregator;
  const podLabels = labels('aggregator');
  const selector = { [LABELS.partOf]: PART_OF, [LABELS.role]: 'aggregator' };
  return [
    new ServiceAccount({ metadata: { name, namespace: opts.namespace, labels: podLabels } }),
    new Role({
      metadata: { name, namespace: opts.namespace, labels: podLabels },
      // Only what kube discovery needs: find trainer/serving Knative Services and their URLs.
      rules: [{ apiGroups: ['serving.knative.dev'], resources: ['services'], verbs: ['get', 'list', 'watch'] }],
    }),
    new RoleBinding({
      metadata: { name, namespace: opts.namespace, labels: podLabels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: opts.namespace }],
    }),
    new Deployment({
      metadata: { name, namespace: opts.namespace, labels: podLabels },
      spec: {
        replicas: 1,
        // Recreate: never two aggregators at once, even during a rollout.
        strategy: { type: 'Recreate' },
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: podLabels },
          spec: {
            serviceAccountName: name,
            securityContext: { runAsNonRoot: true, runAsUser: NODE_UID, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'aggregator',
                image: opts.image,
                args: [CLI_ROLE.aggregator],
                ports: [{ name: 'http', containerPort: CONTAINER_PORT }],
                env: [
                  envValue(ENV.port, CONTAINER_PORT),
                  envValue(ENV.nodes, opts.nodes),
                  envValue(ENV.discovery, 'kube'),
                  { name: ENV.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                  envValue(ENV.partition, PARTITION_DEFAULTS.partition),
                  envValue(ENV.alpha, PARTITION_DEFAULTS.alpha),
                  envValue(ENV.seed, PARTITION_DEFAULTS.seed),
                  envValue(ENV.dataDir, DATA_DIR),
                  databaseUrlEnv(),
                  envSecret(ENV.invokeSecret, NAMES.appSecret, SECRET_KEYS.invokeSecret),
                  envSecret(ENV.adminToken, NAMES.appSecret, SECRET_KEYS.adminToken),
                ],
                resources: RESOURCES.aggregator,
                livenessProbe: httpProbe(HEALTH_ROUTES.aggregator.live, 3),
                readinessProbe: httpProbe(HEALTH_ROUTES.aggregator.ready, 3),
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              },
            ],
          },
        },
      },
    }),
    new CoreService({
      metadata: { name, namespace: opts.namespace, labels: podLabels },
      spec: { type: 'ClusterIP', selector, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    }),
  ];
}

function brokerObjects(opts: ManifestOptions) {
  return [
    new Broker({
      metadata: { name: EVENTING.broker, namespace: opts.namespace, labels: { [LABELS.partOf]: PART_OF } },
    }),
  ];
}

function triggerObjects(opts: ManifestOptions) {
  const triggers: Trigger[] = [];
  for (let node = 0; node < opts.nodes; node++) {
    triggers.push(
      new Trigger({
        metadata: { name: `edgefl-train-${node}`, namespace: opts.namespace, labels: labels('trainer', node) },
        spec: {
          broker: EVENTING.broker,
          filter: { attributes: { type: EVENTING.trainType, [EVENTING.nodeAttribute]: String(node) } },
          subscriber: { ref: { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: NAMES.trainer(node) } },
          // Training is not idempotent for free: keep redelivery low; the aggregator dedupes by round.
          delivery: { retry: 1, backoffPolicy: 'exponential', backoffDelay: 'PT2S' },
        },
      }),
    );
  }
  triggers.push(
    new Trigger({
      metadata: { name: 'edgefl-update-ready', namespace: opts.namespace, labels: labels('aggregator') },
      spec: {
        broker: EVENTING.broker,
        filter: { attributes: { type: EVENTING.updateReadyType } },
        // ref + relative uri: Knative appends the path to the resolved Service address.
        subscriber: { ref: { apiVersion: 'v1', kind: 'Service', name: NAMES.aggregator }, uri: EVENTING.aggregatorPath },
        delivery: { retry: 5, backoffPolicy: 'exponential', backoffDelay: 'PT1S' },
      },
    }),
  );
  return triggers;
}

/** Injects K_SINK (the broker URL) into the aggregator so it can publish round.train events. */
function sinkBindingObjects(opts: ManifestOptions) {
  return [
    new SinkBinding({
      metadata: { name: NAMES.aggregator, namespace: opts.namespace, labels: labels('aggregator') },
      spec: {
        subject: { apiVersion: 'apps/v1', kind: 'Deployment', name: NAMES.aggregator },
        sink: { ref: { apiVersion: 'eventing.knative.dev/v1', kind: 'Broker', name: EVENTING.broker } },
      },
    }),
  ];
}

function plain(models: object[]): object[] {
  // JSON round-trip drops undefined fields and the model classes, leaving exactly what gets applied.
  return models.map((m) => {
    const obj = JSON.parse(JSON.stringify(m));
    validateObject(obj);
    return obj;
  });
}

interface Parts {
  namespace: object[];
  secrets: object[];
  postgres: object[];
  edgeNodes: object[][];
  aggregator: object[];
  broker: object[];
  triggers: object[];
  sinkBinding: object[];
}

function buildParts(opts: ManifestOptions): Parts {
  checkOptions(opts);
  const edgeNodes: object[][] = [];
  for (let node = 0; node < opts.nodes; node++) edgeNodes.push(plain([trainerService(opts, node), servingService(opts, node)]));
  return {
    namespace: plain(namespaceObjects(opts)),
    secrets: plain(secretObjects(opts)),
    postgres: plain(postgresObjects(opts)),
    edgeNodes,
    aggregator: plain(aggregatorObjects(opts)),
    broker: plain(brokerObjects(opts)),
    triggers: plain(triggerObjects(opts)),
    sinkBinding: plain(sinkBindingObjects(opts)),
  };
}

/** All objects for a deployment, each already validated against its schema. */
export function renderManifests(opts: ManifestOptions): object[] {
  const p = buildParts(opts);
  const base = [...p.namespace, ...p.secrets, ...p.postgres, ...p.edgeNodes.flat(), ...p.aggregator];
  return opts.eventing ? [...base, ...p.broker, ...p.triggers, ...p.sinkBinding] : base;
}

const GENERATED_HEADER = '# Generated by `edgefl manifests --write knative/` (services/kube/manifests.ts). Do not edit by hand.\n';

/** Multi-document YAML. */
export function toYaml(objects: object[]): string {
  return objects
    .map((obj) => yaml.dump(JSON.parse(JSON.stringify(obj)), { noRefs: true, lineWidth: -1 }))
    .join('---\n');
}

/** `registry/name:tag` → `registry/name` (what a kustomize `images:` entry matches on). */
export function imageName(image: string): string {
  const at = image.indexOf('@');
  const noDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

function imageEntry(image: string): Record<string, string> {
  const name = imageName(image);
  const rest = image.slice(name.length);
  if (rest.startsWith('@')) return { name, digest: rest.slice(1) };
  if (rest.startsWith(':')) return { name, newTag: rest.slice(1) };
  return { name };
}

function kustomization(body: Record<string, unknown>): object {
  return { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', ...body };
}

export interface ManifestFile {
  /** Relative to the knative/ directory, `/`-separated. */
  path: string;
  content: string;
}

/**
 * Layout (kustomize forbids an overlay referencing a directory that contains it, so the
 * resources live in base/ and knative/kustomization.yaml just points at it):
 *   kustomization.yaml            → `kubectl apply -k knative/`
 *   base/*.yaml + base/kustomization.yaml (images: entry lives here so overlays inherit it)
 *   overlays/eventing/            → base + Broker, Triggers, SinkBinding
 *   overlays/keep-warm/           → base with serving min-scale 1
 */
export function renderKnativeFiles(opts: KnativeDirOptions = DEFAULT_MANIFEST_OPTIONS): ManifestFile[] {
  const p = buildParts({ ...opts, eventing: true });
  const files: ManifestFile[] = [];
  const add = (file: string, objects: object[]) => files.push({ path: file, content: GENERATED_HEADER + toYaml(objects) });

  const baseFiles: Array<[string, object[]]> = [
    ['namespace.yaml', p.namespace],
    ['secrets.yaml', p.secrets],
    ['postgres.yaml', p.postgres],
    ...p.edgeNodes.map((objs, node): [string, object[]] => [`edge-node-${node}.yaml`, objs]),
    ['aggregator.yaml', p.aggregator],
  ];
  for (const [file, objs] of baseFiles) add(`base/${file}`, objs);
  add('base/kustomization.yaml', [
    kustomization({ resources: baseFiles.map(([file]) => file), images: [imageEntry(opts.image)] }),
  ]);
  add('kustomization.yaml', [kustomization({ resources: ['base'] })]);

  add('overlays/eventing/broker.yaml', p.broker);
  add('overlays/eventing/triggers.yaml', p.triggers);
  add('overlays/eventing/sinkbinding.yaml', p.sinkBinding);
  add('overlays/eventing/kustomization.yaml', [
    kustomization({ resources: ['../../base', 'broker.yaml', 'triggers.yaml', 'sinkbinding.yaml'] }),
  ]);

  const keepWarmPatch = yaml.dump(
    [
      {
        op: 'replace',
        path: `/spec/template/metadata/annotations/${ANNOTATIONS.minScale.replace('/', '~1')}`,
        value: '1',
      },
    ],
    { lineWidth: -1 },
  );
  add('overlays/keep-warm/kustomization.yaml', [
    kustomization({
      resources: ['../../base'],
      patches: [
        {
          target: { group: 'serving.knative.dev', version: 'v1', kind: 'Service', labelSelector: `${LABELS.role}=serving` },
          patch: keepWarmPatch,
        },
      ],
    }),
  ]);
  return files;
}

/** Files under a knative/ dir that this generator owns (README.md and the like are left alone). */
export function isGeneratedPath(rel: string): boolean {
  return /^(kustomization\.yaml|base\/[^/]+\.yaml|overlays\/(eventing|keep-warm)\/[^/]+\.yaml)$/.test(rel);
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(path.join(dir, prefix), { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/** Generated files currently in `dir` (relative paths, sorted). */
export async function listGeneratedFiles(dir: string): Promise<string[]> {
  return (await listFiles(dir)).filter(isGeneratedPath).sort();
}

/**
 * (Re)generates `dir`. Stale generated files (e.g. edge-node-4.yaml after going from 5 to 3
 * nodes) are removed so kustomize never picks up a node that no longer exists.
 */
export async function writeKnativeDir(dir: string, opts: KnativeDirOptions = DEFAULT_MANIFEST_OPTIONS): Promise<string[]> {
  const files = renderKnativeFiles(opts);
  const wanted = new Set(files.map((f) => f.path));
  for (const rel of await listGeneratedFiles(dir)) {
    if (!wanted.has(rel)) await fs.rm(path.join(dir, rel));
  }
  for (const f of files) {
    const target = path.join(dir, f.path);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, f.content);
  }
  return files.map((f) => f.path);
}

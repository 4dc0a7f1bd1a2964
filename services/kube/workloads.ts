/**
 * The base workloads: edge trainer/serving Knative Services, the aggregator Deployment and the
 * bundled PostgreSQL. Every pod runs non-root with the `restricted` Pod Security Standard's
 * securityContext, and only the aggregator mounts a service-account token.
 */
import { Namespace, Service as CoreService, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1';
import { ENV } from '../shared/config.js';
import {
  ANNOTATIONS,
  CLI_ROLE,
  CONTAINER_PORT,
  DATA_DIR,
  HEALTH_ROUTES,
  KNATIVE_TUNING,
  LABELS,
  NAMES,
  NODE_UID,
  PART_OF,
  PARTITION_DEFAULTS,
  POSTGRES_IMAGE,
  POSTGRES_UID,
  RESOURCES,
  SECRET_KEYS,
  type ManifestRole,
} from './constants.js';
import type { ResolvedOptions } from './options.js';

export function labels(role: ManifestRole | 'secrets-init', node?: number): Record<string, string> {
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

/**
 * DATABASE_URL carries no password; libpq's PGPASSWORD (which node-postgres reads when the URL
 * has none) comes from the one Secret that holds it, so rotating it means editing one object.
 * An external database's URL may still embed its own password; the URL's wins.
 */
const databaseEnv = (): EnvVar[] => [
  envSecret(ENV.databaseUrl, NAMES.databaseSecret, SECRET_KEYS.databaseUrl),
  envSecret('PGPASSWORD', NAMES.postgresSecret, SECRET_KEYS.postgresPassword),
];

/**
 * Knative probes readiness itself, every 25 ms until ready, only when periodSeconds is 0 or
 * unset; any other value is copied into queue-proxy's probe and delays every cold start.
 */
function knativeReadinessProbe(pathName: string) {
  return { httpGet: { path: pathName, port: CONTAINER_PORT }, timeoutSeconds: 2, failureThreshold: 3 };
}

/** A kubelet-run probe (liveness everywhere, readiness on the plain Deployment). */
function periodicProbe(pathName: string) {
  return { httpGet: { path: pathName, port: CONTAINER_PORT }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 };
}

/** Container half of the `restricted` Pod Security Standard. */
export const containerSecurity = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  runAsNonRoot: true,
  seccompProfile: { type: 'RuntimeDefault' as const },
};

const nodeSecurity = { ...containerSecurity, runAsUser: NODE_UID };

/** Pins a pod to edge machine `node` and tolerates the edge taint that keeps everything else off it. */
function edgePlacement(node: number) {
  return {
    nodeSelector: { [LABELS.edgeNode]: String(node) },
    tolerations: [{ key: LABELS.edgeTaint, operator: 'Exists', effect: 'NoSchedule' }],
  };
}

function trainerService(opts: ResolvedOptions, node: number): KnativeService {
  const podLabels = labels('trainer', node);
  return new KnativeService({
    metadata: {
      name: NAMES.trainer(node),
      namespace: opts.namespace,
      labels: { ...podLabels, [LABELS.visibility]: 'cluster-local' },
    },
    spec: {
      template: {
        metadata: {
          labels: podLabels,
          annotations: { [ANNOTATIONS.minScale]: '0', [ANNOTATIONS.maxScale]: String(KNATIVE_TUNING.trainerMaxScale) },
        },
        spec: {
          containerConcurrency: KNATIVE_TUNING.trainerContainerConcurrency,
          timeoutSeconds: opts.trainerTimeoutSeconds,
          // The trainer answers only when training is done: without this Knative defaults it to 300 s.
          responseStartTimeoutSeconds: opts.trainerTimeoutSeconds,
          // Edge machines are the least trusted: nothing here talks to the Kubernetes API.
          automountServiceAccountToken: false,
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
                ...databaseEnv(),
                envSecret(ENV.invokeSecret, NAMES.appSecret, SECRET_KEYS.invokeSecret),
              ],
              resources: RESOURCES.trainer,
              livenessProbe: periodicProbe(HEALTH_ROUTES.trainer.live),
              readinessProbe: knativeReadinessProbe(HEALTH_ROUTES.trainer.ready),
              securityContext: nodeSecurity,
            },
          ],
        },
      },
    },
  });
}

function servingService(opts: ResolvedOptions, node: number): KnativeService {
  const podLabels = labels('serving', node);
  return new KnativeService({
    // Public by choice (edge clients call it); README shows cluster-local and API keys.
    metadata: { name: NAMES.serving(node), namespace: opts.namespace, labels: podLabels },
    spec: {
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            // 0 = scale to zero (cold start on first request); the keep-warm component sets 1.
            [ANNOTATIONS.minScale]: String(opts.servingMinScale),
            [ANNOTATIONS.maxScale]: String(KNATIVE_TUNING.servingMaxScale),
          },
        },
        spec: {
          containerConcurrency: KNATIVE_TUNING.servingContainerConcurrency,
          timeoutSeconds: KNATIVE_TUNING.servingTimeoutSeconds,
          automountServiceAccountToken: false,
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
                ...databaseEnv(),
                // Optional: an empty/missing key list leaves the predict API open (the documented default).
                envSecret(ENV.apiKeys, NAMES.appSecret, SECRET_KEYS.apiKeys, true),
              ],
              resources: RESOURCES.serving,
              livenessProbe: periodicProbe(HEALTH_ROUTES.serving.live),
              readinessProbe: knativeReadinessProbe(HEALTH_ROUTES.serving.ready),
              securityContext: nodeSecurity,
            },
          ],
        },
      },
    },
  });
}

export function edgeNodeObjects(opts: ResolvedOptions, node: number) {
  return [trainerService(opts, node), servingService(opts, node)];
}

export function namespaceObjects(opts: ResolvedOptions) {
  return [
    new Namespace({
      metadata: {
        name: opts.namespace,
        labels: {
          [LABELS.partOf]: PART_OF,
          // Lets the eventing component's SinkBinding inject K_SINK when Knative runs the
          // SinkBinding webhook in inclusion mode; inert otherwise.
          'bindings.knative.dev/include': 'true',
        },
      },
    }),
  ];
}

const pgIsReady = { exec: { command: ['sh', '-c', 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1'] }, timeoutSeconds: 5 };

export function postgresObjects(opts: ResolvedOptions) {
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
            automountServiceAccountToken: false,
            // The image's entrypoint runs initdb as whichever uid it gets; fsGroup makes the PVC writable for it.
            securityContext: { runAsNonRoot: true, runAsUser: POSTGRES_UID, runAsGroup: POSTGRES_UID, fsGroup: POSTGRES_UID, seccompProfile: { type: 'RuntimeDefault' } },
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
                // Crash recovery of a large WAL can take minutes: liveness only starts once this passed.
                startupProbe: { ...pgIsReady, periodSeconds: 5, failureThreshold: 120 },
                readinessProbe: { ...pgIsReady, periodSeconds: 10 },
                livenessProbe: { ...pgIsReady, periodSeconds: 20, failureThreshold: 3 },
                securityContext: { ...containerSecurity, runAsUser: POSTGRES_UID },
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
export function aggregatorObjects(opts: ResolvedOptions) {
  const name = NAMES.aggregator;
  const podLabels = labels('aggregator');
  const selector = { [LABELS.partOf]: PART_OF, [LABELS.role]: 'aggregator' };
  return [
    new ServiceAccount({ metadata: { name, namespace: opts.namespace, labels: podLabels } }),
    new Role({
      metadata: { name, namespace: opts.namespace, labels: podLabels },
      // Kube discovery (services/kube/discovery.ts discoverTrainers) only lists trainer Knative
      // Services; it neither gets nor watches them, so neither is granted.
      rules: [{ apiGroups: ['serving.knative.dev'], resources: ['services'], verbs: ['list'] }],
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
            // The one pod that needs the API (discovery): its token is mounted on purpose.
            automountServiceAccountToken: true,
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
                  ...databaseEnv(),
                  envSecret(ENV.invokeSecret, NAMES.appSecret, SECRET_KEYS.invokeSecret),
                  envSecret(ENV.adminToken, NAMES.appSecret, SECRET_KEYS.adminToken),
                ],
                resources: RESOURCES.aggregator,
                livenessProbe: periodicProbe(HEALTH_ROUTES.aggregator.live),
                readinessProbe: periodicProbe(HEALTH_ROUTES.aggregator.ready),
                securityContext: nodeSecurity,
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

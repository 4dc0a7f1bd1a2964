/**
 * The base workloads: edge trainer/serving Knative Services and the aggregator Deployment (the
 * bundled PostgreSQL is in ./postgres.ts), plus the env and security helpers they share. Every
 * pod runs non-root with the `restricted` Pod Security Standard's securityContext, and only the
 * aggregator mounts a service-account token.
 */
import { NODE_SECRET_ENV } from '../shared/node-secret.js';
import { Namespace, Service as CoreService, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
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
  RESOURCES,
  SECRET_KEYS,
  type ManifestRole,
} from './constants.js';
import type { ResolvedOptions } from './options.js';
import { mountNodeData } from './data-volume.js';
import { servingHeapOptions } from '../serving/limits.js';

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

export type EnvVar = { name: string; value?: string; valueFrom?: Record<string, unknown> };

export const envValue = (name: string, value: string | number): EnvVar => ({ name, value: String(value) });
export const envSecret = (name: string, secret: string, key: string, optional = false): EnvVar => ({
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

/** What trainers and the aggregator share: the same data partition, the store and the invoke secret. */
const federationEnv = (): EnvVar[] => [
  envValue(ENV.partition, PARTITION_DEFAULTS.partition),
  envValue(ENV.alpha, PARTITION_DEFAULTS.alpha),
  envValue(ENV.seed, PARTITION_DEFAULTS.seed),
  envValue(ENV.dataDir, DATA_DIR),
  ...databaseEnv(),
  envSecret(ENV.invokeSecret, NAMES.appSecret, SECRET_KEYS.invokeSecret),
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

// Read-only root: every role writes only to PostgreSQL (DATABASE_URL is always set in a cluster);
// the container check runs each role this way with no writable path at all.
/** Pods receive traffic on their own IP (queue-proxy, Services): edgefl's loopback default would refuse it. */
const LISTEN_ALL = '0.0.0.0';

const nodeSecurity = { ...containerSecurity, runAsUser: NODE_UID, readOnlyRootFilesystem: true };

/** Pins a pod to edge machine `node` and tolerates the edge taint that keeps everything else off it. */
function edgePlacement(node: number) {
  return {
    nodeSelector: { [LABELS.edgeNode]: String(node) },
    tolerations: [{ key: LABELS.edgeTaint, operator: 'Exists', effect: 'NoSchedule' }],
  };
}

interface EdgeServiceSpec {
  role: 'trainer' | 'serving';
  name: string;
  /** Extra labels on the Knative Service only (not its pods), e.g. visibility. */
  serviceLabels?: Record<string, string>;
  minScale: number;
  maxScale: number;
  containerConcurrency: number;
  /** timeoutSeconds plus, where set, responseStartTimeoutSeconds. */
  timeouts: { timeoutSeconds: number; responseStartTimeoutSeconds?: number };
  env: EnvVar[];
}

/** One edge node's Knative Service: pinned to its machine, no API token, Knative-style probes. */
function edgeService(opts: ResolvedOptions, node: number, s: EdgeServiceSpec): KnativeService {
  const podLabels = labels(s.role, node);
  return new KnativeService({
    metadata: { name: s.name, namespace: opts.namespace, labels: { ...podLabels, ...s.serviceLabels } },
    spec: {
      template: {
        metadata: {
          labels: podLabels,
          annotations: { [ANNOTATIONS.minScale]: String(s.minScale), [ANNOTATIONS.maxScale]: String(s.maxScale) },
        },
        spec: {
          containerConcurrency: s.containerConcurrency,
          ...s.timeouts,
          // Edge machines are the least trusted: nothing here talks to the Kubernetes API.
          automountServiceAccountToken: false,
          ...edgePlacement(node),
          containers: [
            {
              name: s.role,
              image: opts.image,
              args: [CLI_ROLE[s.role]],
              ports: [{ name: 'http1', containerPort: CONTAINER_PORT }],
              // PORT is reserved in Knative (it injects it), so it is deliberately absent here.
              env: [envValue(ENV.host, LISTEN_ALL), envValue(ENV.nodeId, node), envValue(ENV.nodes, opts.nodes), ...s.env],
              resources: RESOURCES[s.role],
              livenessProbe: periodicProbe(HEALTH_ROUTES[s.role].live),
              readinessProbe: knativeReadinessProbe(HEALTH_ROUTES[s.role].ready),
              securityContext: nodeSecurity,
            },
          ],
        },
      },
    },
  });
}

function trainerService(opts: ResolvedOptions, node: number): KnativeService {
  const service = edgeService(opts, node, {
    role: 'trainer',
    name: NAMES.trainer(node),
    // Only the aggregator and the broker call trainers.
    serviceLabels: { [LABELS.visibility]: 'cluster-local' },
    minScale: 0,
    maxScale: KNATIVE_TUNING.trainerMaxScale,
    containerConcurrency: KNATIVE_TUNING.trainerContainerConcurrency,
    // The trainer answers only when training is done: without responseStartTimeoutSeconds
    // Knative defaults it to 300 s and cuts longer rounds.
    timeouts: { timeoutSeconds: opts.trainerTimeoutSeconds, responseStartTimeoutSeconds: opts.trainerTimeoutSeconds },
    // Its own long-term secret, in its own Secret: no other node's pod references it.
    env: [...federationEnv(), envSecret(NODE_SECRET_ENV, NAMES.nodeSecret(node), SECRET_KEYS.nodeSecret)],
  });
  if (opts.dataVolume) mountNodeData(service.spec!.template!.spec!, opts.dataVolume, node);
  return service;
}

function servingService(opts: ResolvedOptions, node: number): KnativeService {
  return edgeService(opts, node, {
    role: 'serving',
    // Public by choice (edge clients call it); knative/README.md shows cluster-local and API keys.
    name: NAMES.serving(node),
    // 0 = scale to zero (cold start on first request); the keep-warm component sets 1.
    minScale: opts.servingMinScale,
    maxScale: KNATIVE_TUNING.servingMaxScale,
    containerConcurrency: KNATIVE_TUNING.servingContainerConcurrency,
    timeouts: { timeoutSeconds: KNATIVE_TUNING.servingTimeoutSeconds },
    env: [
      envValue(ENV.dataDir, DATA_DIR),
      // V8's heap sized for the pod's memory limit, so its own collector keeps it there (no stalls).
      envValue(ENV.nodeOptions, servingHeapOptions(parseInt(RESOURCES.serving.limits.memory, 10))),
      ...databaseEnv(),
      // Optional: an empty/missing key list leaves the predict API open (the documented default).
      envSecret(ENV.apiKeys, NAMES.appSecret, SECRET_KEYS.apiKeys, true),
    ],
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
      // Services, and warm-aware selection (aggregator/kube-warmth.ts) lists their pods; nothing
      // is read one by one or watched, so get and watch are not granted.
      rules: [
        { apiGroups: ['serving.knative.dev'], resources: ['services'], verbs: ['list'] },
        { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      ],
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
                  envValue(ENV.host, LISTEN_ALL),
                  envValue(ENV.nodes, opts.nodes),
                  envValue(ENV.discovery, 'kube'),
                  { name: ENV.namespace, valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                  // A round may not outlast the trainer's request: POST /runs refuses a longer roundTimeoutS.
                  envValue(ENV.maxRoundTimeoutS, opts.trainerTimeoutSeconds),
                  ...federationEnv(),
                  envSecret(ENV.adminToken, NAMES.appSecret, SECRET_KEYS.adminToken),
                ],
                resources: RESOURCES.aggregator,
                livenessProbe: periodicProbe(HEALTH_ROUTES.aggregator.live),
                readinessProbe: periodicProbe(HEALTH_ROUTES.aggregator.ready),
                securityContext: nodeSecurity,
                // A plain Deployment has no queue-proxy draining ahead of SIGTERM: keep serving while the
                // endpoint is removed, so connections still in the listen backlog are not reset (seen in the container check).
                lifecycle: { preStop: { exec: { command: ['sleep', '5'] } } },
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

/**
 * The deployment contract shared by manifests, discovery and the services: names, labels,
 * health routes, event types, resources. Deliberately free of heavy imports so runtime code
 * (the aggregator's kube discovery) can use it without the devDependency model packages.
 */

/**
 * Explicit versions, never `latest`: Knative resolves a tag to a digest per revision, but a
 * Deployment or Job re-pulls a mutable tag on every restart and can silently change code.
 * The edgefl tag follows package.json's version (a test keeps them equal); pin digests with
 * `kustomize edit set image` in a deployment checkout.
 */
export const DEFAULT_IMAGE = 'ghcr.io/edgefl/edgefl:0.1.0';
export const DEFAULT_NAMESPACE = 'edgefl';
export const DEFAULT_NODES = 3;
export const POSTGRES_IMAGE = 'postgres:16.10-bookworm';
/** uid/gid of the `postgres` user in the official image; runAsNonRoot needs it numerically. */
export const POSTGRES_UID = 999;

/** Knative injects PORT=8080; the aggregator Deployment sets it explicitly to the same value. */
export const CONTAINER_PORT = 8080;

export const LABELS = {
  partOf: 'app.kubernetes.io/part-of',
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
  role: 'edgefl.dev/role',
  nodeId: 'edgefl.dev/node-id',
  /** Node label an edge machine carries: `kubectl label node <n> edgefl.dev/edge-node=0`. */
  edgeNode: 'edgefl.dev/edge-node',
  /** Taint key on edge machines (any value, NoSchedule) so only pinned edge workloads land there. */
  edgeTaint: 'edgefl.dev/edge',
  /** Label Knative puts on every pod of a Knative Service. */
  knativeService: 'serving.knative.dev/service',
  /** Knative Route visibility label; cluster-local keeps trainers off the public ingress. */
  visibility: 'networking.knative.dev/visibility',
} as const;

export const PART_OF = 'edgefl';

export type ManifestRole = 'trainer' | 'serving' | 'aggregator' | 'postgres';

export const NAMES = {
  trainer: (node: number) => `edgefl-trainer-${node}`,
  serving: (node: number) => `edgefl-serving-${node}`,
  aggregator: 'edgefl-aggregator',
  postgres: 'edgefl-postgres',
  /** invoke secret, admin token, serving API keys */
  appSecret: 'edgefl-secrets',
  /** DATABASE_URL lives alone in this Secret so an external database replaces it by editing one object. */
  databaseSecret: 'edgefl-database',
  /** POSTGRES_* for the bundled StatefulSet; the only place the database password lives. */
  postgresSecret: 'edgefl-postgres',
  /** Edge node i's long-term secret (secure aggregation's round keys derive from it); only trainer i reads it. */
  nodeSecret: (node: number) => `edgefl-node-secret-${node}`,
  /** Job (and its ServiceAccount/Role) that creates the Secrets above with random values if absent. */
  secretsInit: 'edgefl-secrets-init',
  /** Grafana sidecar ConfigMap holding the dashboard. */
  dashboardConfigMap: 'edgefl-grafana-dashboard',
} as const;

/** Keys inside the Secrets above. */
export const SECRET_KEYS = {
  invokeSecret: 'invoke-secret',
  adminToken: 'admin-token',
  apiKeys: 'api-keys',
  databaseUrl: 'url',
  postgresUser: 'username',
  postgresPassword: 'password',
  postgresDb: 'database',
  nodeSecret: 'node-secret',
} as const;

/** Health routes each role serves (documented contract; probes are generated from this). */
export const HEALTH_ROUTES: Record<Exclude<ManifestRole, 'postgres'>, { live: string; ready: string }> = {
  trainer: { live: '/healthz', ready: '/readyz' },
  serving: { live: '/v2/health/live', ready: '/v2/health/ready' },
  aggregator: { live: '/healthz', ready: '/readyz' },
};

/** CLI role argument (`edgefl <role>`) per workload. */
export const CLI_ROLE = { trainer: 'trainer', serving: 'serve', aggregator: 'aggregator' } as const;

interface Resources {
  requests: { cpu: string; memory: string };
  limits: { cpu: string; memory: string };
}

/**
 * Every resource request/limit in one place. Trainer/serving numbers are placeholders until
 * the benchmark issue measures real peaks (a trainer holds its shard plus tfjs tensors).
 */
export const RESOURCES: Record<ManifestRole, Resources> = {
  trainer: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
  serving: { requests: { cpu: '200m', memory: '128Mi' }, limits: { cpu: '1', memory: '256Mi' } },
  aggregator: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
  postgres: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } },
};

export const KNATIVE_TUNING = {
  /** One round at a time per trainer: training saturates the pod, a second request would only slow both. */
  trainerContainerConcurrency: 1,
  /**
   * A round may train for minutes on a small edge CPU, and the trainer sends no byte until it
   * is done, so responseStartTimeoutSeconds is set to the same value (Knative would otherwise
   * default it to 300 s). 600 is also Knative's default `max-revision-timeout-seconds`; going
   * higher needs the cluster's config-defaults raised first (see ManifestOptions).
   */
  trainerTimeoutSeconds: 600,
  /** Knative Serving's default `max-revision-timeout-seconds` (config-defaults). */
  clusterMaxRevisionTimeoutSeconds: 600,
  /** One trainer per edge node: its shard is per node, and a 2nd pod would double memory on a small machine. */
  trainerMaxScale: 1,
  /** Hard cap so a burst queues in the activator instead of OOM-ing a 256Mi pod. */
  servingContainerConcurrency: 50,
  /** Serving pods are pinned to one edge machine; more replicas than this won't fit there anyway. */
  servingMaxScale: 3,
  servingTimeoutSeconds: 60,
} as const;

export const ANNOTATIONS = {
  minScale: 'autoscaling.knative.dev/min-scale',
  maxScale: 'autoscaling.knative.dev/max-scale',
} as const;

/** CloudEvents routing for the optional Knative Eventing overlay. */
export const EVENTING = {
  broker: 'default',
  trainType: 'dev.edgefl.round.train',
  updateReadyType: 'dev.edgefl.update.ready',
  /** Event-driven inference (services/serving/inference-events.ts): routed to a node's serving function. */
  inferenceType: 'dev.edgefl.inference.requested',
  /** CloudEvents extension attribute carrying the target node id (lowercase alnum, as the spec requires). */
  nodeAttribute: 'edgeflnode',
  aggregatorPath: '/events',
  /** Where Triggers dead-letter round.train events they could not deliver (the aggregator retries them). */
  deadLetterPath: '/events/dead-letter',
  /**
   * Broker class written on the Broker. MTChannelBasedBroker is in every Eventing install; its
   * durability is that of the channel behind it (in-memory by default). For durable rounds use
   * `Kafka` (Knative's Kafka broker) or back MTChannelBasedBroker with a KafkaChannel.
   */
  defaultBrokerClass: 'MTChannelBasedBroker',
} as const;

/** Labels the Prometheus scrape adds to every edgefl series (from pod labels); the dashboard uses them. */
export const SCRAPE_LABELS = {
  node: 'edgefl_node',
  role: 'edgefl_role',
  knativeService: 'knative_service',
  knativeRevision: 'knative_revision',
} as const;

/** Values passed to every trainer so all nodes compute the same partition of the data. */
export const PARTITION_DEFAULTS = { partition: 'dirichlet', alpha: '0.5', seed: '42' } as const;

/** Writable scratch space in the read-only-ish container (the app dir belongs to root). */
export const DATA_DIR = '/tmp/edgefl';

/** Container uid of the `node` user (node:*-bookworm-slim, and the locally built base); runAsNonRoot needs a numeric uid. */
export const NODE_UID = 1000;

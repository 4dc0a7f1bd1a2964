import path from 'node:path';
import { z } from 'zod';
import { BACKENDS, type BackendName } from '../core/backend.js';
import { PARTITION_KINDS } from '../../datasets/partition.js';

/**
 * Every environment variable edgefl reads, in one place. The Knative manifests are
 * generated from these names and a test cross-checks them, so renaming one here
 * without the manifests fails the suite.
 */
export const ENV = {
  databaseUrl: 'DATABASE_URL',
  dataDir: 'EDGEFL_DATA_DIR',
  port: 'PORT',
  /** The address services listen on: loopback by default; the manifests set 0.0.0.0 (a pod's traffic arrives on its IP). */
  host: 'EDGEFL_HOST',
  role: 'EDGEFL_ROLE',
  backend: 'EDGEFL_BACKEND',
  nodeId: 'EDGEFL_NODE_ID',
  nodes: 'EDGEFL_NODES',
  partition: 'EDGEFL_PARTITION',
  alpha: 'EDGEFL_ALPHA',
  shardsPerNode: 'EDGEFL_SHARDS_PER_NODE',
  seed: 'EDGEFL_SEED',
  dataset: 'EDGEFL_DATASET',
  idxDir: 'EDGEFL_IDX_DIR',
  /** A TensorFlow.js Layers model.json: the deployment's model (default: the reference CNN). */
  model: 'EDGEFL_MODEL',
  /** This node's own data (IDX, CSV or image folders); with EDGEFL_PARTITION=none all of it is the node's. */
  nodeData: 'EDGEFL_NODE_DATA',
  // Serving: where object references of inference events resolve (unset: inline images only).
  objectRoot: 'EDGEFL_OBJECT_ROOT',
  /** The aggregator's held-out evaluation data, in the same formats (default: the dataset's test split). */
  evalData: 'EDGEFL_EVAL_DATA',
  testSize: 'EDGEFL_TEST_SIZE',
  maxTrainSamples: 'EDGEFL_MAX_TRAIN_SAMPLES',
  maxBatch: 'EDGEFL_MAX_BATCH',
  maxBodyBytes: 'EDGEFL_MAX_BODY_BYTES',
  /** The memory this function may use; default: its cgroup limit. Bounds what one request may allocate. */
  memoryLimitMiB: 'EDGEFL_MEMORY_LIMIT_MIB',
  invokeSecret: 'EDGEFL_INVOKE_SECRET',
  adminToken: 'EDGEFL_ADMIN_TOKEN',
  /** Explicit opt-out of authentication (1/true); without it a trainer or aggregator refuses to start unprotected. */
  insecure: 'EDGEFL_INSECURE',
  apiKeys: 'EDGEFL_API_KEYS',
  // Read by services/shared/node-secret.ts: an edge node's long-term secret (secure aggregation).
  nodeSecret: 'EDGEFL_NODE_SECRET',
  // Read by services/core/parallel-train.ts: data-parallel training threads.
  trainThreads: 'EDGEFL_TRAIN_THREADS',
  trainerUrls: 'EDGEFL_TRAINER_URLS',
  discovery: 'EDGEFL_DISCOVERY',
  namespace: 'EDGEFL_NAMESPACE',
  servingUrls: 'EDGEFL_SERVING_URLS',
  logLevel: 'EDGEFL_LOG_LEVEL',
  /** The longest roundTimeoutS a run may ask for: the trainers' request timeout in the cluster (Knative cuts a longer request first). */
  maxRoundTimeoutS: 'EDGEFL_MAX_ROUND_TIMEOUT_S',
  /** Read by Node itself, not by edgefl: the manifests size serving's V8 heap with it (servingHeapOptions). */
  nodeOptions: 'NODE_OPTIONS',
  /** Broker URL injected by Knative's SinkBinding: when set, rounds travel through Knative Eventing. */
  eventSink: 'K_SINK',
} as const;

export type Role = 'trainer' | 'serving' | 'aggregator';
export const ROLES: readonly Role[] = ['trainer', 'serving', 'aggregator'];

/** Default ports; Knative always injects PORT, so these only matter locally. */
export const DEFAULT_PORTS: Record<Role, number> = { aggregator: 8080, trainer: 8081, serving: 8082 };

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

// Each reader takes the raw string (undefined when unset or empty) and says what is wrong
// without the variable's name: loadConfig prefixes the name from the issue's path.
const reject = (ctx: z.RefinementCtx, message: string): never => {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER as never;
};
const raw = z.string().optional();

function integer(s: string, min: number, ctx: z.RefinementCtx): number {
  // Decimal digits only: Number() would also take ' ' (as 0), '1e3' and '0x10'.
  const value = /^\s*-?\d+\s*$/.test(s) ? Number(s) : NaN;
  return Number.isSafeInteger(value) && value >= min ? value : reject(ctx, `must be an integer >= ${min}; got '${s}'`);
}
const int = (fallback: number, min = 0) => raw.transform((s, ctx) => (s === undefined ? fallback : integer(s, min, ctx)));
const optionalInt = (min = 0) => raw.transform((s, ctx) => (s === undefined ? undefined : integer(s, min, ctx)));

const positive = (fallback: number) =>
  raw.transform((s, ctx) => {
    if (s === undefined) return fallback;
    const value = Number(s);
    return Number.isFinite(value) && value > 0 ? value : reject(ctx, `must be a positive number; got '${s}'`);
  });

const oneOf = <T extends string>(allowed: readonly T[], fallback: T) =>
  raw.transform((s, ctx): T => {
    if (s === undefined) return fallback;
    return (allowed as readonly string[]).includes(s) ? (s as T) : reject(ctx, `must be one of ${allowed.join(', ')}; got '${s}'`);
  });

const flag = raw.transform((s, ctx) => {
  if (s === undefined) return false;
  if (['1', 'true', 'yes'].includes(s.toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(s.toLowerCase())) return false;
  return reject(ctx, `must be 1/true or 0/false; got '${s}'`);
});

const list = raw.transform((s) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean));

/** Every variable edgefl reads, keyed by its ENV name (the issue path names the variable in errors). */
function envSchema(role?: Role) {
  return z
    .object({
      databaseUrl: raw,
      dataDir: raw.transform((s) => path.resolve(s ?? '.edgefl')),
      port: int(role ? DEFAULT_PORTS[role] : 8080),
      host: raw.transform((s) => s ?? '127.0.0.1'),
      backend: oneOf(['auto', ...BACKENDS] as const, 'auto').transform((b): BackendName | undefined => (b === 'auto' ? undefined : b)),
      nodeId: int(0),
      nodes: int(3, 1),
      partition: oneOf(PARTITION_KINDS, 'dirichlet'),
      alpha: positive(0.5),
      shardsPerNode: int(2, 1),
      seed: int(42),
      dataset: oneOf(['mnist', 'idx'] as const, 'mnist'),
      idxDir: raw,
      model: raw,
      nodeData: raw,
      evalData: raw,
      objectRoot: raw,
      testSize: int(2000, 1),
      maxTrainSamples: int(0),
      maxBatch: int(10_000, 1),
      maxBodyBytes: int(64 * 1024 * 1024, 1024),
      memoryLimitMiB: optionalInt(64),
      invokeSecret: raw,
      adminToken: raw,
      insecure: flag,
      apiKeys: list,
      trainerUrls: list,
      servingUrls: list,
      discovery: oneOf(['static', 'kube'] as const, 'static'),
      namespace: raw.transform((s) => s ?? 'edgefl'),
      logLevel: oneOf(['debug', 'info', 'warn', 'error'] as const, 'info'),
      eventSink: raw,
      maxRoundTimeoutS: optionalInt(1),
    } satisfies Partial<Record<keyof typeof ENV, z.ZodType>>)
    .superRefine((e, ctx) => {
      if (e.nodeId >= e.nodes) reject(ctx, `${ENV.nodeId}=${e.nodeId} must be below ${ENV.nodes}=${e.nodes}`);
      if (e.dataset === 'idx' && !e.idxDir) reject(ctx, `${ENV.dataset}=idx needs ${ENV.idxDir}`);
    })
    .transform(({ partition, nodes, alpha, shardsPerNode, seed, dataset, idxDir, testSize, maxTrainSamples, ...rest }) => ({
      ...rest,
      partition: { kind: partition, nodes, alpha, shardsPerNode, seed },
      data: { dataset, idxDir, testSize, seed, maxTrainSamples },
    }));
}

export type Config = z.output<ReturnType<typeof envSchema>>;
export type DataConfig = Config['data'];
export type PartitionConfig = Config['partition'];

/** Parses the environment; every bad value becomes a ConfigError whose one line names the variable. */
export function loadConfig(env: Env = process.env, role?: Role): Config {
  // Empty strings mean unset, as in a shell's `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(ENV).map(([key, name]) => [key, env[name] === '' ? undefined : env[name]]));
  const parsed = envSchema(role).safeParse(present);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  // Field issues name their variable through the path; cross-field ones name theirs in the message.
  const key = issue.path[0] as keyof typeof ENV | undefined;
  throw new ConfigError(key ? `${ENV[key]} ${issue.message}` : issue.message);
}

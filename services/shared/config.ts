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
  trainerUrls: 'EDGEFL_TRAINER_URLS',
  discovery: 'EDGEFL_DISCOVERY',
  namespace: 'EDGEFL_NAMESPACE',
  servingUrls: 'EDGEFL_SERVING_URLS',
  logLevel: 'EDGEFL_LOG_LEVEL',
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

/** The environment as edgefl reads it: one entry per variable, keyed by the variable's name. */
const EnvSchema = z
  .object({
  [ENV.databaseUrl]: raw,
  [ENV.dataDir]: raw.transform((s) => path.resolve(s ?? '.edgefl')),
  [ENV.port]: optionalInt(0), // its default depends on the role
  [ENV.backend]: oneOf(['auto', ...BACKENDS] as const, 'auto').transform((b): BackendName | undefined => (b === 'auto' ? undefined : b)),
  [ENV.nodeId]: int(0),
  [ENV.nodes]: int(3, 1),
  [ENV.partition]: oneOf(PARTITION_KINDS, 'dirichlet'),
  [ENV.alpha]: positive(0.5),
  [ENV.shardsPerNode]: int(2, 1),
  [ENV.seed]: int(42),
  [ENV.dataset]: oneOf(['mnist', 'idx'] as const, 'mnist'),
  [ENV.idxDir]: raw,
  [ENV.testSize]: int(2000, 1),
  [ENV.maxTrainSamples]: int(0),
  [ENV.maxBatch]: int(10_000, 1),
  [ENV.maxBodyBytes]: int(64 * 1024 * 1024, 1024),
  [ENV.memoryLimitMiB]: optionalInt(64),
  [ENV.invokeSecret]: raw,
  [ENV.adminToken]: raw,
  [ENV.insecure]: flag,
  [ENV.apiKeys]: list,
  [ENV.trainerUrls]: list,
  [ENV.servingUrls]: list,
  [ENV.discovery]: oneOf(['static', 'kube'] as const, 'static'),
  [ENV.namespace]: raw.transform((s) => s ?? 'edgefl'),
  [ENV.logLevel]: oneOf(['debug', 'info', 'warn', 'error'] as const, 'info'),
  [ENV.eventSink]: raw,
  })
  .superRefine((e, ctx) => {
    if (e[ENV.nodeId] >= e[ENV.nodes]) reject(ctx, `${ENV.nodeId}=${e[ENV.nodeId]} must be below ${ENV.nodes}=${e[ENV.nodes]}`);
    if (e[ENV.dataset] === 'idx' && !e[ENV.idxDir]) reject(ctx, `${ENV.dataset}=idx needs ${ENV.idxDir}`);
  });

type ParsedEnv = z.output<typeof EnvSchema>;

function toConfig(e: ParsedEnv, role?: Role) {
  const seed = e[ENV.seed];
  return {
    databaseUrl: e[ENV.databaseUrl],
    dataDir: e[ENV.dataDir],
    port: e[ENV.port] ?? (role ? DEFAULT_PORTS[role] : 8080),
    backend: e[ENV.backend],
    nodeId: e[ENV.nodeId],
    partition: { kind: e[ENV.partition], nodes: e[ENV.nodes], alpha: e[ENV.alpha], shardsPerNode: e[ENV.shardsPerNode], seed },
    data: { dataset: e[ENV.dataset], idxDir: e[ENV.idxDir], testSize: e[ENV.testSize], seed, maxTrainSamples: e[ENV.maxTrainSamples] },
    maxBatch: e[ENV.maxBatch],
    maxBodyBytes: e[ENV.maxBodyBytes],
    memoryLimitMiB: e[ENV.memoryLimitMiB],
    invokeSecret: e[ENV.invokeSecret],
    adminToken: e[ENV.adminToken],
    insecure: e[ENV.insecure],
    apiKeys: e[ENV.apiKeys],
    trainerUrls: e[ENV.trainerUrls],
    servingUrls: e[ENV.servingUrls],
    discovery: e[ENV.discovery],
    namespace: e[ENV.namespace],
    logLevel: e[ENV.logLevel],
    eventSink: e[ENV.eventSink],
  };
}

export type Config = ReturnType<typeof toConfig>;
export type DataConfig = Config['data'];
export type PartitionConfig = Config['partition'];

/** Parses the environment; every bad value becomes a ConfigError whose one line names the variable. */
export function loadConfig(env: Env = process.env, role?: Role): Config {
  // Empty strings mean unset, as in a shell's `VAR= cmd`.
  const present = Object.fromEntries(Object.values(ENV).map((name) => [name, env[name] === '' ? undefined : env[name]]));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    // Field issues name their variable through the path; cross-field ones name theirs in the message.
    throw new ConfigError(issue.path.length ? `${issue.path.join('.')} ${issue.message}` : issue.message);
  }
  return toConfig(parsed.data, role);
}

import path from 'node:path';
import { parseBackendName, type BackendName } from '../core/backend.js';
import { PARTITION_KINDS, type PartitionKind } from '../../datasets/partition.js';

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
  invokeSecret: 'EDGEFL_INVOKE_SECRET',
  adminToken: 'EDGEFL_ADMIN_TOKEN',
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

export interface DataConfig {
  dataset: 'mnist' | 'idx';
  idxDir?: string;
  testSize: number;
  seed: number;
  /** Cap on a node's shard (0 = none): keeps tests and quick demos short. */
  maxTrainSamples: number;
}

export interface PartitionConfig {
  kind: PartitionKind;
  nodes: number;
  alpha: number;
  shardsPerNode: number;
  seed: number;
}

export interface Config {
  databaseUrl?: string;
  dataDir: string;
  port: number;
  backend?: BackendName;
  nodeId: number;
  partition: PartitionConfig;
  data: DataConfig;
  maxBatch: number;
  maxBodyBytes: number;
  invokeSecret?: string;
  adminToken?: string;
  apiKeys: string[];
  trainerUrls: string[];
  servingUrls: string[];
  discovery: 'static' | 'kube';
  namespace: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  eventSink?: string;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  // Decimal digits only: Number() would also take ' ' (as 0), '1e3' and '0x10'.
  const value = /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value < min) throw new ConfigError(`${name} must be an integer >= ${min}; got '${raw}'`);
  return value;
}

function num(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a positive number; got '${raw}'`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${allowed.join(', ')}; got '${raw}'`);
  return raw as T;
}

function list(env: Env, name: string): string[] {
  return (env[name] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function backend(env: Env): BackendName | undefined {
  try {
    return parseBackendName(env[ENV.backend]);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

export function loadConfig(env: Env = process.env, role?: Role): Config {
  const nodes = int(env, ENV.nodes, 3, 1);
  const nodeId = int(env, ENV.nodeId, 0, 0);
  if (nodeId >= nodes) throw new ConfigError(`${ENV.nodeId}=${nodeId} must be below ${ENV.nodes}=${nodes}`);
  const seed = int(env, ENV.seed, 42);
  const dataset = oneOf(env, ENV.dataset, ['mnist', 'idx'] as const, 'mnist');
  const idxDir = env[ENV.idxDir] || undefined;
  if (dataset === 'idx' && !idxDir) throw new ConfigError(`${ENV.dataset}=idx needs ${ENV.idxDir}`);
  return {
    databaseUrl: env[ENV.databaseUrl] || undefined,
    dataDir: path.resolve(env[ENV.dataDir] || '.edgefl'),
    port: int(env, ENV.port, role ? DEFAULT_PORTS[role] : 8080, 0),
    backend: backend(env),
    nodeId,
    partition: {
      kind: oneOf(env, ENV.partition, PARTITION_KINDS, 'dirichlet'),
      nodes,
      alpha: num(env, ENV.alpha, 0.5),
      shardsPerNode: int(env, ENV.shardsPerNode, 2, 1),
      seed,
    },
    data: { dataset, idxDir, testSize: int(env, ENV.testSize, 2000, 1), seed, maxTrainSamples: int(env, ENV.maxTrainSamples, 0) },
    maxBatch: int(env, ENV.maxBatch, 10_000, 1),
    maxBodyBytes: int(env, ENV.maxBodyBytes, 64 * 1024 * 1024, 1024),
    invokeSecret: env[ENV.invokeSecret] || undefined,
    adminToken: env[ENV.adminToken] || undefined,
    apiKeys: list(env, ENV.apiKeys),
    trainerUrls: list(env, ENV.trainerUrls),
    servingUrls: list(env, ENV.servingUrls),
    discovery: oneOf(env, ENV.discovery, ['static', 'kube'] as const, 'static'),
    namespace: env[ENV.namespace] || 'edgefl',
    logLevel: oneOf(env, ENV.logLevel, ['debug', 'info', 'warn', 'error'] as const, 'info'),
    eventSink: env[ENV.eventSink] || undefined,
  };
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ENV } from '../shared/config.js';

export class UsageError extends Error {}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Flags shared by the service commands; each one sets the environment variable the service reads. */
export const SERVICE_FLAGS: Record<string, { env: string; help: string }> = {
  port: { env: ENV.port, help: 'port to listen on' },
  'node-id': { env: ENV.nodeId, help: 'this edge node (0-based)' },
  nodes: { env: ENV.nodes, help: 'number of edge nodes' },
  partition: { env: ENV.partition, help: 'iid | dirichlet | shards' },
  alpha: { env: ENV.alpha, help: 'Dirichlet concentration' },
  seed: { env: ENV.seed, help: 'partition and split seed' },
  dataset: { env: ENV.dataset, help: 'mnist | idx' },
  'idx-dir': { env: ENV.idxDir, help: 'directory with *-idx3-ubyte[.gz] files' },
  'max-train-samples': { env: ENV.maxTrainSamples, help: 'cap on a node shard (quick runs)' },
  'test-size': { env: ENV.testSize, help: 'held-out digits (built-in dataset)' },
  backend: { env: ENV.backend, help: 'tensorflow | wasm | cpu' },
  'data-dir': { env: ENV.dataDir, help: 'local state (embedded PostgreSQL)' },
  'database-url': { env: ENV.databaseUrl, help: 'external PostgreSQL' },
  'trainer-urls': { env: ENV.trainerUrls, help: 'comma-separated trainer URLs (aggregator)' },
};

/** `--insecure`: the explicit opt-out of authentication (EDGEFL_INSECURE=1); logged at start and reported on status routes. */
export const INSECURE_FLAG = 'insecure';

export const serviceOptions: Options = { ...Object.fromEntries(Object.keys(SERVICE_FLAGS).map((k) => [k, { type: 'string' }])), [INSECURE_FLAG]: { type: 'boolean' } };

export function envFromFlags(values: Record<string, string | boolean | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [flag, spec] of Object.entries(SERVICE_FLAGS)) {
    const v = values[flag];
    if (typeof v === 'string') env[spec.env] = v;
  }
  if (values[INSECURE_FLAG] === true) env[ENV.insecure] = '1';
  return env;
}

export function num(values: Record<string, unknown>, name: string, fallback: number): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number; got '${String(v)}'`);
  return n;
}

import { ENV } from '../shared/config.js';
import { text, toggle, type Flags } from './flags.js';

export { UsageError } from './flags.js';

/**
 * Flags shared by the service commands; each one sets the environment variable the service
 * reads, so the environment's schema (services/shared/config.ts) validates both alike.
 */
export const SERVICE_FLAGS = {
  port: text('port to listen on', { arg: 'P', env: ENV.port }),
  'node-id': text('this edge node (0-based)', { arg: 'N', env: ENV.nodeId }),
  nodes: text('number of edge nodes', { arg: 'N', env: ENV.nodes }),
  partition: text('iid | dirichlet | shards', { arg: 'KIND', env: ENV.partition }),
  alpha: text('Dirichlet concentration', { arg: 'A', env: ENV.alpha }),
  seed: text('partition and split seed', { arg: 'N', env: ENV.seed }),
  dataset: text('mnist | idx', { arg: 'NAME', env: ENV.dataset }),
  'idx-dir': text('directory with *-idx3-ubyte[.gz] files', { arg: 'DIR', env: ENV.idxDir }),
  'max-train-samples': text('cap on a node shard (quick runs)', { arg: 'N', env: ENV.maxTrainSamples }),
  'test-size': text('held-out digits (built-in dataset)', { arg: 'N', env: ENV.testSize }),
  backend: text('tensorflow | wasm | cpu', { arg: 'NAME', env: ENV.backend }),
  'data-dir': text('local state (embedded PostgreSQL)', { arg: 'DIR', env: ENV.dataDir }),
  'database-url': text('external PostgreSQL', { arg: 'URL', env: ENV.databaseUrl }),
  'trainer-urls': text('comma-separated trainer URLs (aggregator)', { arg: 'URL,...', env: ENV.trainerUrls }),
  /** The explicit opt-out of authentication; logged at start and reported on status routes. */
  insecure: { ...toggle('run a trainer or aggregator without authentication (logged at start)'), env: ENV.insecure },
} satisfies Flags;

/** The environment variables the given service flags set. */
export function envFromFlags(values: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [flag, spec] of Object.entries(SERVICE_FLAGS)) {
    const v = values[flag];
    if (typeof v === 'string') env[spec.env!] = v;
    else if (v === true) env[spec.env!] = '1'; // a switch
  }
  return env;
}

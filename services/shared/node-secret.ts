/**
 * A node's long-term secret: the root of its secure-aggregation keys (every round's keys
 * are derived from it, services/core/secagg/keys.ts). It must be known to that node's
 * trainer only, never to the aggregator.
 *
 *  - In a cluster: EDGEFL_NODE_SECRET, from the node's own Kubernetes Secret.
 *  - Locally (embedded database, one machine): derived with HKDF from a master secret in
 *    <dataDir>/node-master.key, created by the first trainer `edgefl up` starts. secrets.json
 *    is left as it was, so older data directories keep working.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createOnce } from './secrets.js';

export const NODE_SECRET_ENV = 'EDGEFL_NODE_SECRET';
export const NODE_MASTER_FILE = 'node-master.key';

/** The secret for `nodeId`, or undefined when none is configured (the node then refuses secure-aggregation rounds). */
export function resolveNodeSecret(cfg: { dataDir: string; databaseUrl?: string }, nodeId: string, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const given = env[NODE_SECRET_ENV];
  if (given) {
    if (given.length < 32) throw new Error(`${NODE_SECRET_ENV} must be at least 32 characters`);
    return Buffer.from(given, 'utf8');
  }
  if (cfg.databaseUrl) return undefined;
  return deriveNodeSecret(localNodeMaster(cfg.dataDir), nodeId);
}

/** Per-node secrets from one local master: distinct per node, stable across restarts. */
export function deriveNodeSecret(master: Uint8Array, nodeId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, 'edgefl-node-secret-v1', nodeId, 32));
}

function localNodeMaster(dataDir: string): Buffer {
  const file = path.join(dataDir, NODE_MASTER_FILE);
  createOnce(file, randomBytes(32).toString('base64') + '\n');
  const master = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (master.length < 32) throw new Error(`${file} does not hold a 32-byte base64 secret; delete it to generate a new one`);
  return master;
}

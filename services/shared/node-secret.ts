/**
 * A node's long-term secret: the root of its secure-aggregation keys (every round's keys
 * are derived from it, services/core/secagg/keys.ts). It must be known to that node's
 * trainer only, never to the aggregator.
 *
 *  - In a cluster: EDGEFL_NODE_SECRET, from the node's own Kubernetes Secret.
 *  - Locally: derived with HKDF from a master secret in <dataDir>/node-master.key (mode
 *    0600), created on first use; `edgefl up` hands each trainer its own derived secret, a
 *    trainer started alone on the embedded database derives it itself. secrets.json is left
 *    as it was, so older data directories keep working.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ENV } from './config.js';
import { createOnce } from './secrets.js';

export const NODE_SECRET_ENV = ENV.nodeSecret;
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

/** `edgefl up`: the environment that gives the trainer of `nodeId` its own secret, from the data directory's master. */
export function localNodeSecretEnv(dataDir: string, nodeId: string): Record<string, string> {
  return { [NODE_SECRET_ENV]: deriveNodeSecret(localNodeMaster(dataDir), nodeId).toString('base64') };
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

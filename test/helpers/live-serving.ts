import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { initBackend } from '../../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../../services/core/model.js';
import { freePort } from '../../services/harness/ports.js';
import { spawnService } from '../../services/harness/process.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { publishPromoted } from './promote.js';

const root = path.resolve(import.meta.dirname, '../..');

export interface LiveServing {
  url: string;
  /** The model version it serves. */
  version: string;
  proc: ChildProcess;
  log: string[];
  stop(): Promise<void>;
}

/**
 * A real serving function (`edgefl serve` from dist/, as a separate process) on its own
 * database, serving a published and promoted model: what the protocol conformance suites talk to.
 */
export async function startLiveServing(env: Record<string, string> = {}): Promise<LiveServing> {
  const db: TestDatabase = await createTestDatabase();
  await initBackend('cpu');
  const model = buildModel(3);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(model));
  model.dispose();
  const version = await publishPromoted(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() }, metrics: { source: 'conformance' } });
  const port = await freePort();
  const child = spawnService({
    name: 'serving',
    args: [path.join(root, 'services/cli/bin.mjs'), 'serve', '--port', String(port)],
    cwd: root,
    env: { DATABASE_URL: db.url, EDGEFL_LOG_LEVEL: 'warn', EDGEFL_MEMORY_LIMIT_MIB: '256', ...env },
    stdout: 'pipe',
  });
  const { proc } = child;
  const log: string[] = [];
  proc.stdout!.on('data', (c: Buffer) => log.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer | string) => log.push(String(c)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await child.stop();
    await db.close();
  };
  try {
    await child.waitReady(`${url}/v2/health/ready`, { timeoutMs: 90_000, intervalMs: 100 });
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, version: String(version), proc, log, stop };
}

export const postJson = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

/** Starts one live serving function for a suite (beforeAll) and stops it after (afterAll); its fields are set once it is ready. */
export function useLiveServing(): LiveServing {
  const live = {} as LiveServing;
  beforeAll(async () => {
    Object.assign(live, await startLiveServing());
  }, 120_000);
  afterAll(async () => {
    await live.stop?.();
  });
  return live;
}

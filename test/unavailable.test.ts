import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { initBackend } from '../services/core/backend.js';
import { createLogger } from '../services/shared/log.js';
import { buildModel } from '../services/core/model.js';
import { createPool } from '../services/store/database.js';
import { freePort } from '../services/harness/ports.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset } from '../datasets/types.js';

// A trainer whose PostgreSQL is down (nothing listens on the port) must say "try again", not "broken".
let server: Server;
let url: string;
const pool = createPool(`postgres://edgefl:x@127.0.0.1:${await freePort()}/edgefl`, 1);

beforeAll(async () => {
  await initBackend();
  const shard = subset(builtinMnistSplit().train, [0, 1, 2, 3]);
  const app = createTrainerApp({ pool, nodeId: 'node-0', shard, model: buildModel(1), log: createLogger({}, 'error', () => {}) });
  server = app.listen(0);
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
});
afterAll(async () => {
  server?.close();
  await pool.end();
});

describe('a dependency outage', () => {
  it('is a 503 with Retry-After and the usual error body, not a 500', async () => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ runId: 'r', round: 1, modelVersion: 1 }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');
  });
});

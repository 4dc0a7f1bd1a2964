import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type http from 'node:http';
import { initBackend } from '../services/core/backend.js';
import { buildModel } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import { listAsyncUpdates } from '../services/store/async-updates.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, quietLog, serve, shards, startTrainer, testData, waitFor, waitRunDone, type Running } from './helpers/federation.js';

let db: TestDatabase;
let running: Running[] = [];
let targets: TrainerTarget[] = [];
let federation: Federation;
/** The gated node's requests wait until the test lets them through. */
let release!: () => void;
let gatedRequests = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  await initBackend();
  running = await Promise.all(shards(data.train, 2, 120).map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
  const gate = new Promise<void>((r) => (release = r));
  const gatedApp = createTrainerApp({ pool: db.pool, nodeId: 'gated', shard: shards(data.train, 1, 120, 600)[0]!, model: buildModel(1), log: quietLog });
  const gated = await serve(async (req, res) => {
    if (req.method === 'POST') gatedRequests++;
    await gate;
    gatedApp(req as http.IncomingMessage, res);
  });
  running.push(gated);
  targets = [...running.slice(0, 2).map((t, i) => ({ nodeId: `node-${i}`, url: t.url })), { nodeId: 'gated', url: gated.url }];
  federation = new Federation({ pool: db.pool, log: quietLog, heldOut: data.test, trainers: async () => targets, retryBackoffMs: 100 });
});

afterAll(async () => {
  release?.();
  await federation?.shutdown();
  await Promise.all(running.map((r) => r.close()));
  await db?.close();
});

describe('stopping a fedbuff run', () => {
  it('is graceful: the update in flight is awaited and aggregated, nothing is left half-done', async () => {
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, concurrency: 3, maxStaleness: 1000, rounds: 500, nodes: ['node-0', 'node-1', 'gated'] }));
    await waitFor('an aggregation while the gated node trains', async () => gatedRequests > 0 && (await store.listRounds(db.pool, run.id)).some((r) => r.status === 'completed'), 120_000);
    expect(await federation.stop(run.id)).toBe(true);
    // Everything else comes back; the run waits on the gated node's invocation instead of abandoning it.
    // An update that came back after the stop may wait in a part-full buffer: the drain's last
    // aggregation, after the gated one arrives, takes it (checked below: nothing stays buffered).
    await waitFor('only the gated invocation in flight', async () => {
      const rows = await listAsyncUpdates(db.pool, run.id);
      const training = rows.filter((r) => r.status === 'training');
      return training.length === 1 && training[0]!.nodeId === 'gated' ? rows : undefined;
    }, 120_000);
    expect((await store.getRun(db.pool, run.id))!.status).toBe('running');
    const invocationsAtStop = (await listAsyncUpdates(db.pool, run.id)).length;
    release();

    const done = await waitRunDone(db.pool, run.id, 120_000);
    expect(done.status).toBe('stopped');
    const rows = await listAsyncUpdates(db.pool, run.id);
    expect(rows).toHaveLength(invocationsAtStop); // nothing new was asked after the stop
    expect(rows.filter((r) => r.status === 'training' || r.status === 'buffered')).toEqual([]);
    const gated = rows.find((r) => r.nodeId === 'gated')!;
    expect(gated.status).toBe('aggregated');
    const rounds = await store.listRounds(db.pool, run.id);
    expect(rounds.filter((r) => r.status === 'running')).toEqual([]);
    const last = rounds.filter((r) => r.status === 'completed').at(-1)!;
    expect(gated.aggregation).toBe(last.round);
    expect(done.latestVersion).toBe(last.globalVersion);
    // Every stored update is whole and accounted for: aggregated into a version, or recorded as not used.
    const updates = await store.listRunUpdates(db.pool, run.id);
    for (const u of updates) expect(rows.find((r) => r.updateId === u.id)?.status).toMatch(/^(aggregated|stale|rejected|failed)$/);
  });
});

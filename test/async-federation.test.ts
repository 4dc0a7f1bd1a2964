import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type http from 'node:http';
import { initBackend } from '../services/core/backend.js';
import { buildModel } from '../services/core/model.js';
import { createMetrics } from '../services/shared/metrics.js';
import * as store from '../services/store/model-store.js';
import { listAsyncUpdates, type AsyncUpdateRow } from '../services/store/async-updates.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { Federation } from '../aggregator/federation.js';
import { createAggregatorApp } from '../aggregator/app.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, quietLog, serve, shards, startTrainer, testData, waitFor, waitRunDone, type Running } from './helpers/federation.js';

/** Live trainers in-process on disjoint shards; a federation with metrics (the discard counter is asserted). */
let db: TestDatabase;
let trainers: Running[] = [];
let extra: Running[] = [];
let targets: TrainerTarget[] = [];
let federation: Federation;
let api: Running;
const metrics = createMetrics('aggregator');

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  trainers = await Promise.all(shards(data.train, 4, 150).map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
  targets = trainers.map((t, i) => ({ nodeId: `node-${i}`, url: t.url }));
  await initBackend();
  federation = new Federation({ pool: db.pool, log: quietLog, heldOut: data.test, trainers: async () => targets, retryBackoffMs: 100, metrics });
  api = await serve(createAggregatorApp({ pool: db.pool, federation, log: quietLog, trainers: async () => targets, servingUrls: () => [], metrics }));
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([...trainers, ...extra, api].filter(Boolean).map((r) => r.close()));
  await db?.close();
});

/** Every aggregated update trained from the version its row names, and its staleness is the aggregations between. */
async function checkLedger(runId: string, run: store.RunRow): Promise<AsyncUpdateRow[]> {
  const rows = await listAsyncUpdates(db.pool, runId);
  const rounds = await store.listRounds(db.pool, runId);
  const versionOf = (aggregation: number) => (aggregation === 0 ? run.initialVersion : rounds.find((r) => r.round === aggregation)!.globalVersion);
  for (const r of rows.filter((x) => x.status === 'aggregated')) {
    expect(r.baseVersion).toBe(versionOf(r.baseAggregation));
    expect(r.staleness).toBe(r.aggregation! - 1 - r.baseAggregation);
    const update = (await store.listRunUpdates(db.pool, runId)).find((u) => u.id === r.updateId)!;
    expect(update).toMatchObject({ nodeId: r.nodeId, round: r.invocation, baseVersion: r.baseVersion });
  }
  return rows;
}

describe('fedbuff on live trainers', () => {
  it('reaches the target without rounds; every update records its base version and staleness', async () => {
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, concurrency: 3, targetAccuracy: 0.8, rounds: 60, nodes: ['node-0', 'node-1', 'node-2', 'node-3'] }));
    const done = await waitRunDone(db.pool, run.id, 300_000);
    expect(done.status).toBe('completed');
    expect(done.stopReason).toMatch(/target accuracy 0.8 reached in round \d+/);
    const rounds = await store.listRounds(db.pool, run.id);
    expect(rounds.every((r) => r.status === 'completed')).toBe(true);
    expect(rounds.at(-1)!.metrics.globalAccuracy).toBeGreaterThanOrEqual(0.8);
    // Versions chain through the aggregations; each aggregation folded exactly K = 2 updates.
    expect(rounds.map((r, i) => r.baseVersion === (i === 0 ? run.initialVersion : rounds[i - 1]!.globalVersion))).not.toContain(false);
    const rows = await checkLedger(run.id, run);
    for (const r of rounds) expect(rows.filter((x) => x.aggregation === r.round)).toHaveLength(2);
    // Three train at once and two make a step: the third is always at least one aggregation stale.
    expect(rows.some((r) => r.status === 'aggregated' && r.staleness! > 0)).toBe(true);
    const view = (await (await fetch(`${api.url}/runs/${run.id}`)).json()) as { async: { aggregations: number; meanStaleness: number; stalenessHistogram: Record<string, number> } };
    expect(view.async.aggregations).toBe(rounds.length);
    expect(view.async.meanStaleness).toBeGreaterThan(0);
    expect(Object.keys(view.async.stalenessHistogram)).toContain('1');
  });

  it('scores the test split only for the versions it promotes; a synchronous round scores it every round', async () => {
    const nodes = ['node-0', 'node-1', 'node-2'];
    const asyncRun = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, concurrency: 3, rounds: 2, nodes, promote: 'latest' }));
    await waitRunDone(db.pool, asyncRun.id, 120_000);
    const manualRun = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, concurrency: 3, rounds: 2, nodes, promote: 'manual' }));
    await waitRunDone(db.pool, manualRun.id, 120_000);
    const syncRun = await federation.startRun(parseRunConfig({ ...FAST, rounds: 1, nodes, promote: 'manual' }));
    await waitRunDone(db.pool, syncRun.id, 120_000);
    const metricsOf = async (id: string) => (await store.listRounds(db.pool, id)).map((r) => r.metrics as { promoted?: boolean; testAccuracy?: number; testedOn?: number });
    const promoted = await metricsOf(asyncRun.id);
    expect(promoted).toHaveLength(2);
    for (const m of promoted) expect(m).toMatchObject({ promoted: true, testAccuracy: expect.any(Number), testedOn: expect.any(Number) });
    const unpromoted = await metricsOf(manualRun.id);
    expect(unpromoted).toHaveLength(2);
    for (const m of unpromoted) expect(m.promoted === false && m.testAccuracy === undefined && m.testedOn === undefined).toBe(true);
    const [sync] = await metricsOf(syncRun.id);
    expect(sync).toMatchObject({ promoted: false, testAccuracy: expect.any(Number) });
  });

  it('discards an update staler than maxStaleness, counts it, and an abort stops the run cleanly', async () => {
    // A node whose requests wait until the test lets them through: its update arrives many aggregations late.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const data = await testData();
    const slowApp = createTrainerApp({ pool: db.pool, nodeId: 'slow', shard: shards(data.train, 1, 150, 600)[0]!, model: buildModel(1), log: quietLog });
    const slow = await serve(async (req, res) => {
      await gate;
      slowApp(req as http.IncomingMessage, res);
    });
    extra.push(slow);
    targets.push({ nodeId: 'slow', url: slow.url });
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 1, maxStaleness: 1, rounds: 500, nodes: ['node-0', 'node-1', 'slow'] }));
    await waitFor('three aggregations while the slow node trains', async () => (await store.listRounds(db.pool, run.id)).filter((r) => r.status === 'completed').length >= 3, 120_000);
    release();
    const stale = await waitFor('the slow update to be discarded', async () => (await listAsyncUpdates(db.pool, run.id)).find((r) => r.nodeId === 'slow' && r.status === 'stale'), 120_000);
    expect(stale.baseAggregation).toBe(0);
    expect(stale.staleness).toBeGreaterThan(1);
    expect(stale.updateId).not.toBeNull();
    const discarded = (await metrics.registry.getSingleMetric('edgefl_async_updates_discarded_total')!.get()).values.find((v) => v.labels.reason === 'stale');
    expect(discarded?.value).toBeGreaterThanOrEqual(1);

    expect(await federation.abort(run.id)).toBe(true);
    const done = await waitRunDone(db.pool, run.id);
    await waitFor('the run to be let go', async () => !federation.isDriving(run.id));
    expect(done.status).toBe('stopped');
    const rows = await checkLedger(run.id, done);
    // Nothing is left in flight, and nothing stale or unfinished went into a version.
    expect(rows.filter((r) => r.status === 'training')).toEqual([]);
    expect(rows.filter((r) => r.status === 'aggregated' && r.nodeId === 'slow' && r.baseAggregation === 0)).toEqual([]);
    const rounds = await store.listRounds(db.pool, run.id);
    expect(rounds.filter((r) => r.status === 'running')).toEqual([]);
    expect(done.latestVersion).toBe(rounds.filter((r) => r.status === 'completed').at(-1)!.globalVersion);
  });

  it('a trainer killed mid-update costs only its own invocations: the run completes without it', async () => {
    // Dies (connection cut, then refuses connections) a moment into its first training.
    let killed = false;
    const dying = await serve((req) => {
      setTimeout(() => {
        killed = true;
        req.socket.destroy();
        void dying.close();
      }, 300);
    });
    extra.push(dying);
    targets.push({ nodeId: 'dying', url: dying.url });
    // Short invocations, so the dead node's slot comes back soon; the run gives up only after 20 of them without an aggregation.
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, roundTimeoutS: 8, maxRoundAttempts: 20, rounds: 4, nodes: ['node-0', 'node-1', 'node-2', 'dying'] }));
    const done = await waitRunDone(db.pool, run.id, 300_000);
    expect(killed).toBe(true);
    expect(done.status).toBe('completed');
    expect(done.stopReason).toMatch(/maximum of 4 rounds/);
    const rows = await checkLedger(run.id, done);
    const dead = rows.filter((r) => r.nodeId === 'dying');
    expect(dead.length).toBeGreaterThan(0);
    expect(dead.every((r) => r.status === 'failed')).toBe(true);
    expect(rows.filter((r) => r.status === 'aggregated')).toHaveLength(8);
    expect(await store.listRunUpdates(db.pool, run.id).then((u) => u.filter((x) => x.nodeId === 'dying'))).toEqual([]);
  });

  it('asks a failing node once per invocation: another node takes its place, and it is drawn again after its cooldown', async () => {
    // Answers 503 to everything, as an emulated flaky device does after training.
    const requestsPerInvocation = new Map<string, number>();
    const failing = await serve((req, res) => {
      const id = String(req.headers['x-request-id']);
      requestsPerInvocation.set(id, (requestsPerInvocation.get(id) ?? 0) + 1);
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'device_failed', message: 'emulated failure' } }));
    });
    extra.push(failing);
    targets.push({ nodeId: 'failing', url: failing.url });
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 2, concurrency: 2, rounds: 3, nodes: ['node-0', 'node-1', 'failing'] }));
    const done = await waitRunDone(db.pool, run.id, 300_000);
    expect(done.status).toBe('completed');
    const failed = (await checkLedger(run.id, done)).filter((r) => r.nodeId === 'failing');
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((r) => r.status === 'failed')).toBe(true);
    // Exactly one request per invocation: no retry loop until the deadline.
    const ours = [...requestsPerInvocation].filter(([id]) => id.startsWith(run.id));
    expect(ours).toHaveLength(failed.length);
    expect(ours.every(([, n]) => n === 1)).toBe(true);
  });

  it('a restarted aggregator resumes the run with the updates the previous one had buffered', async () => {
    const data = await testData();
    const aggregator = () => new Federation({ pool: db.pool, log: quietLog, heldOut: data.test, trainers: async () => targets, retryBackoffMs: 100 });
    const first = aggregator();
    // One at a time, three per aggregation: the first buffered update waits for two more trainings.
    const run = await first.startRun(parseRunConfig({ ...FAST, strategy: 'fedbuff', bufferSize: 3, concurrency: 1, rounds: 2, nodes: ['node-0', 'node-1', 'node-2'] }));
    const buffered = await waitFor('an update in the buffer', async () => (await listAsyncUpdates(db.pool, run.id)).find((r) => r.status === 'buffered'));
    await first.shutdown();
    expect((await store.listRounds(db.pool, run.id)).filter((r) => r.status === 'completed')).toEqual([]);
    const second = aggregator();
    try {
      expect(await second.resumeAll()).toContain(run.id);
      const done = await waitRunDone(db.pool, run.id, 300_000);
      expect(done.status).toBe('completed');
      const rows = await checkLedger(run.id, done);
      expect(rows.find((r) => r.invocation === buffered.invocation)).toMatchObject({ status: 'aggregated', aggregation: 1 });
      expect(rows.filter((r) => r.status === 'training')).toEqual([]);
      // The only failures are what the first process left in flight (if anything): numbering went on without a clash.
      for (const r of rows.filter((x) => x.status === 'failed')) expect(r.reason).toMatch(/^abandoned: the driver stopped|aggregator restarted/);
    } finally {
      await second.shutdown();
    }
  });
});

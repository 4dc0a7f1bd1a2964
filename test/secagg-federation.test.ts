import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { decodeStoredWeights } from '../services/core/codec.js';
import { referenceModelSpec } from '../services/core/model.js';
import { quantizationErrorBound } from '../services/core/secagg/quantize.js';
import { encodeInput } from '../services/core/secagg/protocol.js';
import { bytesToWords } from '../services/core/secagg/masking.js';
import * as store from '../services/store/model-store.js';
import * as secaggStore from '../services/store/secagg.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, shards, testData, waitRunDone, type Running } from './helpers/federation.js';
import { capturingLog, logLines, relay, send, secureTrainer, stageInterceptor, type StageHook } from './helpers/secagg.js';

const SECRET = randomBytes(32).toString('base64');
const IDS = ['node-a', 'node-b', 'node-c'];
const SHARD = 100;
const RUN = { ...FAST, rounds: 1, seed: 5 };

let db: TestDatabase;
let trainers: Running[] = [];
let fronts: Running[] = [];
let federation: Federation;
/** What each node's front does with the next stages; default: forward. */
const hooks = new Map<string, StageHook>();

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  trainers = await Promise.all(shards(data.train, 3, SHARD).map((s, i) => secureTrainer(db.pool, IDS[i]!, s, SECRET)));
  fronts = await Promise.all(IDS.map((id, i) => stageInterceptor(() => trainers[i]!.url, (stage, d, forward, res) => (hooks.get(id) ?? ((_s, _d, f, r) => relay(f, r)))(stage, d, forward, res))));
  const targets: TrainerTarget[] = IDS.map((nodeId, i) => ({ nodeId, url: fronts[i]!.url }));
  federation = new Federation({ pool: db.pool, log: capturingLog({ service: 'aggregator' }), heldOut: data.test, trainers: async () => targets, retryBackoffMs: 100, invokeSecret: SECRET });
}, 120_000);

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([...fronts, ...trainers].map((r) => r.close()));
  await db?.close();
});

async function runOnce(extra: Record<string, unknown>) {
  const run = await federation.startRun(parseRunConfig({ ...RUN, ...extra }));
  const done = await waitRunDone(db.pool, run.id, 180_000);
  const [round] = await store.listRounds(db.pool, run.id);
  return { run: done, round: round! };
}

const modelOf = async (version: number) => {
  const m = (await store.getModel(db.pool, version))!;
  return decodeStoredWeights(m.bytes, m.checksum, referenceModelSpec()).flat;
};
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const SETTINGS = { clipRange: 1, bits: 22, maxWeight: 10_000 };

describe('secure aggregation on a live federation', () => {
  let plain: { run: store.RunRow; round: store.RoundRow };
  let secure: { run: store.RunRow; round: store.RoundRow };

  it('gives the plain FedAvg model within the quantization error, storing no plain update', async () => {
    plain = await runOnce({ strategy: 'fedavg' });
    secure = await runOnce({ strategy: 'secagg-fedavg' });
    expect(secure.round.status).toBe('completed');
    expect(secure.round.metrics.participants).toEqual(IDS);
    const next = await modelOf(secure.run.latestVersion!);
    const error = maxAbsDiff(await modelOf(plain.run.latestVersion!), next);
    // The round moved the model far more than the two runs differ.
    expect(maxAbsDiff(next, await modelOf(secure.round.baseVersion))).toBeGreaterThan(100 * error);
    // Training is seeded, so each node's update is the same in both runs; weights r = 100/10000, Σr = 0.03.
    expect(error).toBeLessThanOrEqual(quantizationErrorBound(SETTINGS, 3) / 0.03 + 1e-6);
    expect(await store.listUpdates(db.pool, secure.run.id, 1)).toEqual([]);
  });

  it('nothing stored or logged equals or reveals one node\'s update', async () => {
    const at = { runId: secure.run.id, round: 1, attempt: 1 };
    const base = await modelOf(plain.round.baseVersion);
    const masked = await secaggStore.listMasked(db.pool, at);
    expect(masked.map((m) => m.nodeId)).toEqual(IDS);
    const stored: Buffer[] = (await db.pool.query(`SELECT masked AS b FROM secagg_masked UNION ALL SELECT sealed FROM secagg_shares UNION ALL SELECT convert_to(shares::text, 'UTF8') FROM secagg_unmask`)).rows.map((r) => r.b);
    for (const u of await store.listUpdates(db.pool, plain.run.id, 1)) {
      const weights = decodeStoredWeights((await store.getUpdateBytes(db.pool, u.id))!, u.checksum, referenceModelSpec()).flat;
      const floats = Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
      // Any 32 bytes of the plain update (eight weights) appear nowhere in what secure aggregation stored.
      for (const offset of [0, 4000, floats.length - 64]) for (const b of stored) expect(b.includes(floats.subarray(offset, offset + 32))).toBe(false);
      // The node's masked vector against what it encodes: no better than chance agreement, word by word.
      const x = encodeInput(Float64Array.from(weights, (w, i) => w - base[i]!), SHARD, SETTINGS.maxWeight, SETTINGS);
      const y = bytesToWords(masked.find((m) => m.nodeId === u.nodeId)!.masked);
      expect(y.length).toBe(x.length);
      expect(y.filter((v, i) => v === x[i]).length).toBeLessThan(3);
      // No masked input carries a sample count either.
      expect(masked.every((m) => m.metrics.samples === undefined)).toBe(true);
      // Nor does any log line print eight of its weights.
      const printed = Array.from(weights.subarray(100, 108), (w) => String(w));
      expect(logLines.filter((l) => printed.every((p) => l.includes(p)))).toEqual([]);
    }
    expect(logLines.some((l) => l.includes('secure aggregation unmasked the sum'))).toBe(true);
  });
});

const drop = (stage: string, how: 'vanish' | 'refuse'): StageHook => async (s, _d, forward, res) => {
  if (s !== stage) return relay(forward, res);
  if (how === 'vanish') res.socket?.destroy();
  else res.writeHead(422, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'test_refusal', message: `refused ${stage}` } }));
};

describe('dropouts', () => {
  it('a node that vanishes after sending its masked input: the round completes, its update still in the sum', async () => {
    // node-c stores its masked input and dies before replying: from then on nothing reaches it.
    let dead = false;
    hooks.set('node-c', async (stage, _d, forward, res) => {
      if (dead) return void res.socket?.destroy();
      if (stage !== 'mask') return relay(forward, res);
      await forward();
      dead = true;
      res.socket?.destroy();
    });
    try {
      // Were a lost reply waited for until the deadline (240 s), the run would not end within runOnce's wait (180 s).
      const { run, round } = await runOnce({ strategy: 'secagg-fedavg', roundTimeoutS: 240 });
      expect(round.status).toBe('completed');
      expect(round.metrics.participants).toEqual(IDS);
      const answers = await secaggStore.listUnmask(db.pool, { runId: run.id, round: 1, attempt: 1 });
      expect(answers.map((a) => a.nodeId)).toEqual(['node-a', 'node-b']);
      // Same seed, same three updates: the same model as the plain run, within the quantization error.
      const plainRun = (await store.listRuns(db.pool)).find((r) => (r.config as { strategy: string }).strategy === 'fedavg')!;
      expect(maxAbsDiff(await modelOf(plainRun.latestVersion!), await modelOf(run.latestVersion!))).toBeLessThanOrEqual(quantizationErrorBound(SETTINGS, 3) / 0.03 + 1e-6);
    } finally {
      hooks.clear();
    }
  });

  it('a node that fails before masking: the survivors\' masks with it are removed and their sum recovered', async () => {
    hooks.set('node-c', drop('mask', 'refuse'));
    try {
      const { run, round } = await runOnce({ strategy: 'secagg-fedavg' });
      expect(round.status).toBe('completed');
      expect(round.metrics.participants).toEqual(['node-a', 'node-b']);
      const c = (round.metrics.nodes as { nodeId: string; status: string; reason?: string }[]).find((n) => n.nodeId === 'node-c')!;
      expect(c).toMatchObject({ status: 'failed', reason: expect.stringMatching(/masked input: .*refused mask/) });
      // The mean of node-a's and node-b's plain updates (equal shards: equal weights).
      const plainRun = (await store.listRuns(db.pool)).find((r) => (r.config as { strategy: string }).strategy === 'fedavg')!;
      const ups = await store.listUpdates(db.pool, plainRun.id, 1);
      const w = await Promise.all(ups.filter((u) => u.nodeId !== 'node-c').map(async (u) => decodeStoredWeights((await store.getUpdateBytes(db.pool, u.id))!, u.checksum, referenceModelSpec()).flat));
      const mean = Float32Array.from(w[0]!, (v, i) => (v + w[1]![i]!) / 2);
      expect(maxAbsDiff(mean, await modelOf(run.latestVersion!))).toBeLessThanOrEqual(quantizationErrorBound(SETTINGS, 2) / 0.02 + 1e-6);
    } finally {
      hooks.clear();
    }
  });

  it('with fewer survivors than the threshold the round fails and no node reveals a share', async () => {
    hooks.set('node-b', drop('mask', 'refuse'));
    hooks.set('node-c', drop('mask', 'refuse'));
    try {
      const { run, round } = await runOnce({ strategy: 'secagg-fedavg', maxRoundAttempts: 1 });
      expect(round.status).toBe('failed');
      expect(round.metrics.reason).toMatch(/only 1 masked inputs of 3 nodes; the threshold is 2/);
      expect(await secaggStore.listUnmask(db.pool, { runId: run.id, round: 1, attempt: 1 })).toEqual([]);
    } finally {
      hooks.clear();
    }
  });
});

describe('forgery', () => {
  it('a share altered in the database fails the round with a clear error, unmasking nothing', async () => {
    hooks.set('node-a', async (stage, d, forward, res) => {
      if (stage === 'mask') await db.pool.query(`UPDATE secagg_shares SET sealed = set_byte(sealed, 20, get_byte(sealed, 20) # 1) WHERE run_id = $1 AND from_node = 'node-b' AND to_node = 'node-a'`, [d.runId]);
      return relay(forward, res);
    });
    try {
      const { run, round } = await runOnce({ strategy: 'secagg-fedavg', maxRoundAttempts: 1 });
      expect(round.status).toBe('failed');
      expect(round.metrics.reason).toMatch(/secure aggregation: a node refused to unmask: .*the share node-b sealed for node-a fails authentication: it was altered or forged/);
      expect(run.latestVersion).toBe(round.baseVersion);
    } finally {
      hooks.clear();
    }
  });

  it('a masked input altered in the database fails the round before anything is unmasked', async () => {
    hooks.set('node-b', async (stage, d, forward, res) => {
      const answer = await forward();
      // Altered after the node stored it, before the aggregator reads it.
      if (stage === 'mask') await db.pool.query(`UPDATE secagg_masked SET masked = set_byte(masked, 0, get_byte(masked, 0) # 1) WHERE run_id = $1 AND node_id = 'node-b'`, [d.runId]);
      send(answer, res);
    });
    try {
      const { run, round } = await runOnce({ strategy: 'secagg-fedavg', maxRoundAttempts: 1 });
      expect(round.status).toBe('failed');
      expect(round.metrics.reason).toMatch(/the masked input stored for node-b fails authentication: it was altered or forged; nothing was unmasked/);
      expect(await secaggStore.listUnmask(db.pool, { runId: run.id, round: 1, attempt: 1 })).toEqual([]);
    } finally {
      hooks.clear();
    }
  });
});

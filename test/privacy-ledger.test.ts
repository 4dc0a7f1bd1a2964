import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { createLogger } from '../services/shared/log.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import { dpSgdPlan } from '../services/core/privacy/dp-sgd.js';
import * as store from '../services/store/model-store.js';
import { ledgerOf, reservePrivacy, spentByNode, spentEpsilon } from '../services/store/privacy-ledger.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { loadBuiltinDigits } from '../datasets/builtin-mnist.js';
import { subset } from '../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { serverGroup } from './helpers/serve.js';

const NODE = 'node-dp';
const SHARD = 128;
const BATCH = 32;
const SIGMA = 1.0;
const DELTA = 1e-5;
// One round here is q = 0.25 for 4 steps; the budget admits two rounds and not a third.
const ROUND = dpSgdPlan(SHARD, 1, BATCH, SIGMA);
const AFTER2 = spentEpsilon([ROUND, ROUND], DELTA);
const AFTER3 = spentEpsilon([ROUND, ROUND, ROUND], DELTA);
const BUDGET = (AFTER2 + AFTER3) / 2;

let db: TestDatabase;
let base: string;
const servers = serverGroup();
let v1: number;
const logLines: string[] = [];

beforeAll(async () => {
  await initBackend('wasm');
  db = await createTestDatabase();
  const all = loadBuiltinDigits();
  const shard = subset(all, Array.from({ length: SHARD }, (_, i) => (i * 37) % all.count));
  const initial = buildModel(1);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(initial));
  initial.dispose();
  v1 = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
  const log = createLogger({ service: 'privacy-test' }, 'info', (l) => logLines.push(l));
  const app = createTrainerApp({ pool: db.pool, nodeId: NODE, shard, model: buildModel(1), log });
  base = (await servers.listen(app)).url;
});

afterAll(async () => {
  await servers.closeAll();
  await db?.close();
  expect(logLines.filter((l) => l.includes('unhandled error'))).toEqual([]);
});

const train = (runId: string, round: number, dp: Record<string, unknown> = {}) =>
  fetch(`${base}/`, {
    method: 'POST',
    // Plain JSON, as curl users send: 201 for a new update, 200 for a stored one.
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      runId,
      round,
      modelVersion: v1,
      epochs: 1,
      batchSize: BATCH,
      learningRate: 0.05,
      optimizer: 'sgd',
      deadline: new Date(Date.now() + 120_000).toISOString(),
      dp: { mode: 'local', epsilonBudget: BUDGET, delta: DELTA, noiseMultiplier: SIGMA, clip: 1, ...dp },
    }),
  });

describe('per-node privacy budget, end to end through the trainer', () => {
  it('trains DP rounds within the budget, reporting the growing ε, then refuses the round past it', async () => {
    const r1 = await train('run-a', 1);
    expect(r1.status).toBe(201);
    const b1 = (await r1.json()) as { metrics: { epsilon: number; loss: unknown; accuracy: unknown } };
    expect(b1.metrics.epsilon).toBeCloseTo(spentEpsilon([ROUND], DELTA), 3);
    // Training loss/accuracy are not noised, so a DP round does not release them.
    expect(b1.metrics.loss).toBeNull();
    expect(b1.metrics.accuracy).toBeNull();
    const r2 = await train('run-a', 2);
    expect(r2.status).toBe(201);
    expect(((await r2.json()) as { metrics: { epsilon: number } }).metrics.epsilon).toBeCloseTo(AFTER2, 3);

    const r3 = await train('run-a', 3);
    expect(r3.status).toBe(403);
    const err = ((await r3.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('privacy_budget_exhausted');
    expect(err.message).toMatch(/past its budget/);
    // Refused before training: no update stored, nothing more spent.
    const rows = await db.pool.query('SELECT 1 FROM client_updates WHERE run_id = $1 AND round = 3', ['run-a']);
    expect(rows.rowCount).toBe(0);
    expect(await ledgerOf(db.pool, NODE)).toHaveLength(2);
  });

  it('the budget spans runs: a new run cannot reset what the node has spent', async () => {
    const r = await train('run-b', 1);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('privacy_budget_exhausted');
    const spent = await spentByNode(db.pool, DELTA, [NODE]);
    expect(spent[NODE]).toBeCloseTo(AFTER2, 6);
  });

  it('a retried round returns the stored update without spending twice', async () => {
    const r = await train('run-a', 2);
    expect(r.status).toBe(200);
    expect(await ledgerOf(db.pool, NODE)).toHaveLength(2);
  });

  it('rejects impossible DP settings with 400', async () => {
    for (const bad of [{ delta: 0.5 }, { noiseMultiplier: -1 }, { clip: 0 }, { epsilonBudget: 'lots' }, { mode: 'magic' }, { extra: 1 }]) {
      const r = await train('run-c', 1, bad);
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/'dp(\.\w+)?'/);
    }
  });
});

describe('reservePrivacy', () => {
  it('concurrent reservations on one node never grant more than the budget allows', async () => {
    const node = 'node-race';
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => reservePrivacy(db.pool, { nodeId: node, runId: 'race', round: i + 1, event: ROUND, delta: DELTA, epsilonBudget: BUDGET })),
    );
    expect(results.filter((r) => r.granted)).toHaveLength(2);
    const ledger = await ledgerOf(db.pool, node);
    expect(ledger).toHaveLength(2);
    expect(ledger[1]!.epsilonTotal).toBeLessThanOrEqual(BUDGET);
  });
});

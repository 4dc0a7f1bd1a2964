import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAggregatorApp } from '../aggregator/app.js';
import type { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { dpSgdPlan } from '../services/core/privacy/dp-sgd.js';
import { clientLevelEpsilon } from '../services/core/privacy/dp-fedavg.js';
import * as store from '../services/store/model-store.js';
import { ledgerOf, reservePrivacy, spentEpsilon } from '../services/store/privacy-ledger.js';
import { readFileSync } from 'node:fs';
import { DP_CNN } from '../services/core/model-zoo.js';
import { runModelSpec } from '../services/store/run-model.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, createFederation, quietLog, serve, shards, startTrainer, testData, waitRunDone, type Running } from './helpers/federation.js';

const SHARD = 100;
const DP = { mode: 'local', delta: 1e-5, noiseMultiplier: 1, clip: 1 } as const;
const TRAIN = { ...FAST, batchSize: 50, learningRate: 0.05, optimizer: 'sgd' } as const;
// One round is q = 0.5 for 2 steps; the budget admits two rounds and not a third.
const ROUND = dpSgdPlan(SHARD, TRAIN.epochs, TRAIN.batchSize, DP.noiseMultiplier);
const BUDGET = (spentEpsilon([ROUND, ROUND], DP.delta) + spentEpsilon([ROUND, ROUND, ROUND], DP.delta)) / 2;

let db: TestDatabase;
let trainers: Running[] = [];
let targets: TrainerTarget[] = [];
let federation: Federation;
let api: Running;

const spend = async (nodeId: string, rounds: number) => {
  for (let r = 1; r <= rounds; r++) await reservePrivacy(db.pool, { nodeId, runId: 'earlier-run', round: r, event: ROUND, delta: DP.delta, epsilonBudget: BUDGET });
};

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  const ids = ['node-a', 'node-b', 'node-c'];
  trainers = await Promise.all(shards(data.train, 3, SHARD).map((s, i) => startTrainer(db.pool, ids[i]!, s)));
  targets = trainers.map((t, i) => ({ nodeId: ids[i]!, url: t.url }));
  // node-a and node-b registered their shard sizes (the aggregator can foresee their budgets); node-c did not.
  for (const id of ['node-a', 'node-b']) await store.upsertNode(db.pool, { id, shardSize: SHARD, labelHistogram: [] });
  // node-b and node-c spent their budgets in an earlier run.
  await spend('node-b', 2);
  await spend('node-c', 2);
  federation = await createFederation(db.pool, data.test, () => targets);
  api = await serve(createAggregatorApp({ pool: db.pool, federation, log: quietLog, trainers: async () => targets, servingUrls: () => [] }));
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([api, ...trainers].filter(Boolean).map((r) => r.close()));
  await db?.close();
});

const post = (body: unknown) => fetch(`${api.url}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('record-level DP on a live federation', () => {
  it('nodes out of budget are unavailable, not fatal; the run ends when every budget is spent', async () => {
    const res = await post({ ...TRAIN, rounds: 5, minQuorum: 1, dp: { ...DP, epsilonBudget: BUDGET } });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const done = await waitRunDone(db.pool, id, 240_000);
    expect([done.status, done.stopReason]).toEqual(['completed', 'every node has spent its privacy budget']);

    const rounds = await store.listRounds(db.pool, id);
    expect(rounds.map((r) => r.status)).toEqual(['completed', 'completed']);
    // node-b is foreseen as out of budget (registered shard size) and never asked; node-c
    // (unregistered) is asked once, refuses, and is left out from then on.
    expect(rounds.map((r) => r.selected)).toEqual([['node-a', 'node-c'], ['node-a']]);
    expect(rounds.map((r) => r.metrics.participants)).toEqual([['node-a'], ['node-a']]);
    const c = (rounds[0]!.metrics.nodes as { nodeId: string; status: string; reason?: string }[]).find((n) => n.nodeId === 'node-c')!;
    expect(c).toMatchObject({ status: 'failed', reason: expect.stringMatching(/HTTP 403: privacy_budget_exhausted/) });
    expect(await ledgerOf(db.pool, 'node-a')).toHaveLength(2);
    expect(await ledgerOf(db.pool, 'node-b')).toHaveLength(2);
    expect(await ledgerOf(db.pool, 'node-c')).toHaveLength(2);

    const view = (await (await fetch(`${api.url}/runs/${id}`)).json()) as { privacy: { mode: string; nodeEpsilon: Record<string, number> } };
    expect(view.privacy.mode).toBe('local');
    expect(view.privacy.nodeEpsilon['node-a']).toBeCloseTo(spentEpsilon([ROUND, ROUND], DP.delta), 3);
    expect(view.privacy.nodeEpsilon['node-a']).toBeLessThanOrEqual(BUDGET);
  });

  it('POST /runs refuses impossible privacy settings with 400', async () => {
    const tiny = await post({ ...TRAIN, dp: { ...DP, epsilonBudget: 0.01 } });
    expect(tiny.status).toBe(400);
    expect(((await tiny.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'impossible_privacy', message: expect.stringMatching(/one round on a node holding 100 records/) });
    const badDelta = await post({ ...TRAIN, dp: { ...DP, epsilonBudget: 8, delta: 0.5 } });
    expect(badDelta.status).toBe(400);
    expect(((await badDelta.json()) as { error: { message: string } }).error.message).toMatch(/dp\.delta/);
    const noDp = await post({ ...TRAIN, strategy: 'dp-fedavg' });
    expect(noDp.status).toBe(400);
  });

  it('a run carrying its own model (the tanh dp-cnn model.json: strided, same-padded convs) trains under DP-SGD', async () => {
    const { modelTopology } = JSON.parse(readFileSync('datasets/models/dp-cnn/model.json', 'utf8')) as { modelTopology: unknown };
    const res = await post({ ...TRAIN, rounds: 1, nodes: ['node-a'], model: modelTopology, dp: { ...DP, epsilonBudget: 1000 } });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const done = await waitRunDone(db.pool, id, 120_000);
    expect(done.status).toBe('completed');
    expect((await runModelSpec(db.pool, id))?.layers).toEqual(DP_CNN.layers);
    const [round] = await store.listRounds(db.pool, id);
    expect(round!.metrics.participants).toEqual(['node-a']);
    const view = (await (await fetch(`${api.url}/runs/${id}`)).json()) as { privacy: { nodeEpsilon: Record<string, number> } };
    // node-a's two rounds of the first run, and this one's round of the same mechanism.
    expect(view.privacy.nodeEpsilon['node-a']).toBeCloseTo(spentEpsilon([ROUND, ROUND, ROUND], DP.delta), 3);
  });
});

describe('client-level DP-FedAvg on a live federation', () => {
  it('aggregates with clipping and noise, adapts the clip, and reports the client-level ε and the clip', async () => {
    const dp = { mode: 'central', epsilonBudget: 50, noiseMultiplier: 1, clip: 0.5, adaptiveClip: { countNoiseMultiplier: 1 } };
    const config = parseRunConfig({ ...TRAIN, rounds: 1, strategy: 'dp-fedavg', nodes: ['node-a'], dp });
    const run = await federation.startRun(config);
    const done = await waitRunDone(db.pool, run.id, 120_000);
    expect(done.status).toBe('completed');
    const view = (await (await fetch(`${api.url}/runs/${run.id}`)).json()) as { privacy: { mode: string; clientEpsilon: number; clip: number } };
    expect(view.privacy.mode).toBe('central');
    // Accounted at dp.noiseMultiplier: the count bits are paid for by more noise on the updates, not more ε.
    expect(view.privacy.clientEpsilon).toBeCloseTo(clientLevelEpsilon({ rounds: 1, participationRate: 1, noiseMultiplier: 1, delta: 1e-5 }), 3);
    // One geometric step from 0.5: by at most e^±(0.2·(1 + noise)), and (noise being continuous) not 0.5 itself.
    expect(view.privacy.clip).toBeGreaterThan(0.1);
    expect(view.privacy.clip).not.toBe(0.5);
  });

  it('ends the run when another round would take the client-level ε past the budget', async () => {
    const dp = { mode: 'central', noiseMultiplier: 2, clip: 0.5, delta: 1e-5 } as const;
    const eps = (rounds: number) => clientLevelEpsilon({ rounds, participationRate: 1, noiseMultiplier: dp.noiseMultiplier, delta: dp.delta });
    const res = await post({ ...TRAIN, rounds: 6, strategy: 'dp-fedavg', nodes: ['node-a'], dp: { ...dp, epsilonBudget: (eps(2) + eps(3)) / 2 } });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const done = await waitRunDone(db.pool, id, 120_000);
    expect([done.status, done.stopReason]).toEqual(['completed', expect.stringMatching(/^another round would take the client-level ε to .* past dp.epsilonBudget/)]);
    expect((await store.listRounds(db.pool, id)).filter((r) => r.status === 'completed')).toHaveLength(2);
    const view = (await (await fetch(`${api.url}/runs/${id}`)).json()) as { privacy: { clientEpsilon: number; epsilonBudget: number } };
    expect(view.privacy.clientEpsilon).toBeCloseTo(eps(2), 3);
    expect(view.privacy.clientEpsilon).toBeLessThanOrEqual(view.privacy.epsilonBudget);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, createFederation, maliciousTrainer, shards, startTrainer, testData, waitRunDone, type Attack, type Running } from './helpers/federation.js';

/**
 * One malicious node of three. Honest nodes train 250 digits each; the attacker writes
 * its own update row every round (the global model ×50, or random weights) and claims
 * as many samples as an honest node.
 */
const SHARD = 250;
let db: TestDatabase;
let honest: Running[] = [];
const attackers: Partial<Record<Attack, Running>> = {};
let federation: Federation;
let targets: TrainerTarget[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  honest = await Promise.all(shards(data.train, 2, SHARD).map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
  for (const a of ['scaled', 'random', 'wrong-manifest', 'nan', 'bad-checksum'] as Attack[]) attackers[a] = await maliciousTrainer(db.pool, `evil-${a}`, a, SHARD);
  targets = [...honest.map((r, i) => ({ nodeId: `node-${i}`, url: r.url })), ...Object.entries(attackers).map(([a, r]) => ({ nodeId: `evil-${a}`, url: r!.url }))];
  federation = await createFederation(db.pool, data.test, () => targets);
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([...honest, ...Object.values(attackers)].map((r) => r!.close()));
  await db?.close();
});

async function runWith(evil: string[], extra: Record<string, unknown>) {
  const run = await federation.startRun(parseRunConfig({ ...FAST, epochs: 2, nodes: ['node-0', 'node-1', ...evil], ...extra }));
  const done = await waitRunDone(db.pool, run.id, 120_000);
  const rounds = await store.listRounds(db.pool, run.id);
  const accuracies = rounds.filter((r) => r.status === 'completed').map((r) => Number(r.metrics.globalAccuracy));
  return { done, rounds, accuracies };
}

describe('one malicious node of three', () => {
  it('×50 weights: FedAvg collapses, the median still reaches the target', async () => {
    const avg = await runWith(['evil-scaled'], { rounds: 1, strategy: 'fedavg' });
    const med = await runWith(['evil-scaled'], { rounds: 6, strategy: 'median', targetAccuracy: 0.85 });
    console.log(`scaled ×50: fedavg ${avg.accuracies.map((a) => a.toFixed(3)).join(' ')} | median ${med.accuracies.map((a) => a.toFixed(3)).join(' ')}`);
    expect(Math.max(...avg.accuracies)).toBeLessThan(0.3);
    expect(med.done.stopReason).toMatch(/target accuracy 0.85 reached/);
    expect(Math.max(...med.accuracies)).toBeGreaterThanOrEqual(0.85);
  });

  it('random weights: FedAvg collapses, the trimmed mean still reaches the target', async () => {
    const avg = await runWith(['evil-random'], { rounds: 1, strategy: 'fedavg' });
    const trim = await runWith(['evil-random'], { rounds: 6, strategy: 'trimmed-mean', trimFraction: 0.34, targetAccuracy: 0.85 });
    console.log(`random: fedavg ${avg.accuracies.map((a) => a.toFixed(3)).join(' ')} | trimmed-mean ${trim.accuracies.map((a) => a.toFixed(3)).join(' ')}`);
    expect(Math.max(...avg.accuracies)).toBeLessThan(0.3);
    expect(trim.done.stopReason).toMatch(/target accuracy 0.85 reached/);
  });
});

describe('a robust strategy needs enough updates to be robust', () => {
  it('median of two updates is refused: the round fails without publishing (an honest and a ×50 node would average to ×25.5)', async () => {
    const two = await runWith(['evil-scaled'], { rounds: 1, strategy: 'median', nodes: ['node-0', 'evil-scaled'], maxRoundAttempts: 1 });
    expect(two.done.status).toBe('failed');
    expect(two.rounds).toHaveLength(1);
    expect(two.rounds[0]).toMatchObject({ status: 'failed', globalVersion: null });
    expect(two.rounds[0]!.metrics.reason).toBe('only 2 of 2 nodes delivered; median needs at least 3 accepted updates to stay robust');
    expect(two.done.latestVersion).toBe(two.done.initialVersion);
  });
});

describe('updates are checked before they count', () => {
  const statusOf = (round: store.RoundRow, node: string) => round.metrics.nodes.find((n: { nodeId: string }) => n.nodeId === node);

  it('rejects a step beyond maxUpdateNorm (policy reject) and records its norm; clips it with policy clip', async () => {
    const rejected = await runWith(['evil-scaled'], { rounds: 1, epochs: 1, maxUpdateNorm: 50, normPolicy: 'reject' });
    expect(rejected.done.status).toBe('completed');
    const evil = statusOf(rejected.rounds[0]!, 'evil-scaled');
    expect(evil.status).toBe('rejected_update');
    expect(evil.reason).toMatch(/exceeds 50/);
    expect(evil.updateNorm).toBeGreaterThan(50);
    expect(rejected.rounds[0]!.metrics.participants).toEqual(['node-0', 'node-1']);
    for (const n of ['node-0', 'node-1']) {
      expect(statusOf(rejected.rounds[0]!, n).status).toBe('ok');
      expect(statusOf(rejected.rounds[0]!, n).clipped).toBeUndefined();
    }

    const clipped = await runWith(['evil-random'], { rounds: 1, epochs: 1, maxUpdateNorm: 50, normPolicy: 'clip' });
    const evil2 = statusOf(clipped.rounds[0]!, 'evil-random');
    expect(evil2).toMatchObject({ status: 'ok', clipped: true });
    expect(evil2.updateNorm).toBeGreaterThan(50);
  });

  it('refuses updates with a foreign manifest, NaN weights or a wrong stored checksum; they do not make up a quorum', async () => {
    const bad = ['evil-wrong-manifest', 'evil-nan', 'evil-bad-checksum'];
    const ok = await runWith(bad, { rounds: 1, epochs: 1, minQuorum: 2 });
    expect(ok.done.status).toBe('completed');
    const round = ok.rounds[0]!;
    expect(round.metrics.participants).toEqual(['node-0', 'node-1']);
    expect(statusOf(round, 'evil-wrong-manifest')).toMatchObject({ status: 'rejected_update', reason: expect.stringMatching(/shape_mismatch/) });
    expect(statusOf(round, 'evil-nan')).toMatchObject({ status: 'rejected_update', reason: expect.stringMatching(/non_finite/) });
    expect(statusOf(round, 'evil-bad-checksum')).toMatchObject({ status: 'rejected_update', reason: expect.stringMatching(/checksum does not match/) });

    // five delivered, two valid: a quorum of three is not met
    const failed = await runWith(bad, { rounds: 1, epochs: 1, minQuorum: 3, maxRoundAttempts: 1 });
    expect(failed.done.status).toBe('failed');
    expect(failed.rounds[0]!.metrics.reason).toMatch(/only 2 of 5 nodes delivered/);
  });
});

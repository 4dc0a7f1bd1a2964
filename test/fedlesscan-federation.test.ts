import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as store from '../services/store/model-store.js';
import type { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, createFederation, hangingTrainer, shards, startTrainer, testData, waitRunDone, type Running } from './helpers/federation.js';

let db: TestDatabase;
let running: Running[] = [];
let targets: TrainerTarget[] = [];
let federation: Federation;

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  const trainers = await Promise.all(shards(data.train, 3, 100).map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
  const hang = await hangingTrainer();
  running = [...trainers, hang];
  targets = [...trainers.map((t, i) => ({ nodeId: `node-${i}`, url: t.url })), { nodeId: 'hang', url: hang.url }];
  federation = await createFederation(db.pool, data.test, () => targets);
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all(running.map((r) => r.close()));
  await db?.close();
});

describe('fedlesscan on live trainers', () => {
  it('asks every node once first, then leaves out the node that missed its round', async () => {
    const run = await federation.startRun(parseRunConfig({ ...FAST, strategy: 'fedlesscan', fraction: 0.5, rounds: 4, roundTimeoutS: 10 }));
    const done = await waitRunDone(db.pool, run.id, 240_000);
    expect(done.status, done.stopReason ?? '').toBe('completed');
    const rounds = await store.listRounds(db.pool, run.id);
    expect(rounds.map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    // Rookies first: the first two rounds ask all four nodes, two each.
    expect(new Set([...rounds[0]!.selected, ...rounds[1]!.selected])).toEqual(new Set(['node-0', 'node-1', 'node-2', 'hang']));
    const missedIn = rounds.findIndex((r) => r.selected.includes('hang'));
    expect(rounds[missedIn]!.metrics.stragglers).toEqual(['hang']);
    // After its miss it cools down, then ranks with the slow: the three that deliver are preferred.
    for (const r of rounds.slice(2)) expect(r.selected).not.toContain('hang');
  });
});

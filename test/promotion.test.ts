import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { referenceModelSpec, specSize } from '../services/core/model.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { listenForPromotions, type PromotionNotice } from '../services/store/listen.js';
import { MIGRATIONS, migrate } from '../services/store/migrations.js';
import * as store from '../services/store/model-store.js';
import { PromotionError, listServing, promote, promotedFor, promotionHistory } from '../services/store/promotion.js';
import { DEFAULT_RETENTION, RetentionPolicy, applyRetention, bestOfRuns, retentionFromEnv } from '../services/store/retention.js';
import { servingPlan, verifyWeights } from '../aggregator/model-routes.js';
import { decideByPolicy, splitHeldOut } from '../aggregator/promotion.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { quietLog } from './helpers/federation.js';

function weights(fill: number) {
  const flat = new Float32Array(specSize(referenceModelSpec())).fill(fill);
  const bytes = encodeWeights(referenceModelSpec(), flat);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
}
const publish = (fill: number, extra: Partial<store.NewModelVersion> = {}) => store.publishModel(db.pool, { ...weights(fill), ...extra });
const fleet = (version: number) => promote(db.pool, { version, by: 'test', reason: 'fleet' }, verifyWeights);
const canary = (version: number, nodes: string[]) => promote(db.pool, { version, nodes, by: 'test', reason: 'canary' }, verifyWeights);
async function rejection(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(PromotionError);
  return (e as PromotionError).code;
}

let db: TestDatabase;
beforeAll(async () => {
  await initBackend();
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

describe('promotion policy (pure)', () => {
  const base = { round: 3, candidateAccuracy: 0.9, minImprovement: 0 };
  it('gives the reason the history records with the round driver’s decision (decidePromotion)', () => {
    expect(decideByPolicy({ ...base, policy: 'best', promotedAccuracy: 0.89 })).toEqual({ promote: true, reason: 'validation 90.00% beats the promoted 89.00%' });
    expect(decideByPolicy({ ...base, policy: 'best', promotedAccuracy: 0.9 })).toEqual({ promote: false, reason: 'validation 90.00% does not beat the promoted 90.00%' });
    expect(decideByPolicy({ ...base, policy: 'best', promotedAccuracy: 0.89, minImprovement: 0.02 })).toEqual({ promote: false, reason: 'validation 90.00% does not beat the promoted 89.00% by 2.00%' });
    expect(decideByPolicy({ ...base, policy: 'best', promotedAccuracy: undefined })).toEqual({ promote: true, reason: 'nothing promoted yet (validation 90.00%)' });
    expect(decideByPolicy({ ...base, policy: 'latest', promotedAccuracy: 0.99 }).promote).toBe(true);
    expect(decideByPolicy({ ...base, policy: 'manual', promotedAccuracy: undefined }).promote).toBe(false);
    for (const policy of ['best', 'latest', 'manual'] as const) expect(decideByPolicy({ ...base, round: 0, policy, promotedAccuracy: undefined }).promote).toBe(false);
  });

  it('splits the held-out digits into disjoint validation and test halves with the same label mix', () => {
    const set = { images: new Float32Array(10 * 4).map((_, i) => i), labels: Uint8Array.from([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]), count: 10, rows: 2, cols: 2, numClasses: 5 };
    const { validation, test } = splitHeldOut(set);
    expect([validation.count, test.count]).toEqual([5, 5]);
    expect([...validation.labels]).toEqual([0, 1, 2, 3, 4]);
    expect([...test.labels]).toEqual([0, 1, 2, 3, 4]);
    expect(validation.images[4]).toBe(8); // image 2's first pixel
    expect(test.images[0]).toBe(4); // image 1's first pixel
  });

  it('plans what each node serves from the promotions in force', () => {
    const p = (id: number, version: number, nodes: string[] | null) => ({ id, version, nodes, by: 't', reason: 'r', figures: {}, runId: null, at: '' });
    expect(servingPlan(['node-0', 'node-1'], [p(3, 7, ['node-1']), p(2, 5, null)])).toEqual([
      { nodeId: 'node-0', version: 5, canary: false, promotionId: 2 },
      { nodeId: 'node-1', version: 7, canary: true, promotionId: 3 },
    ]);
  });
});

describe('migration 3 on an existing database', () => {
  it('adds the lifecycle and promotes the version that was serving (the newest), so an upgrade keeps serving', async () => {
    const old = await createTestDatabase();
    try {
      // Back to a schema without the lifecycle (migrations 3 and 4), with two published versions.
      await old.pool.query('DROP TABLE promotions; DROP TABLE serving_status; ALTER TABLE model_versions DROP COLUMN pruned_at; DELETE FROM schema_migrations WHERE version IN (3, 4)');
      const a = await store.publishModel(old.pool, weights(0.1));
      const b = await store.publishModel(old.pool, weights(0.2));
      expect(await migrate(old.pool)).toEqual([3, 4]);
      expect(MIGRATIONS.map((m) => m.version)).toEqual([...MIGRATIONS.map((m) => m.version)].sort((x, y) => x - y));
      const p = await promotedFor(old.pool, 'node-0');
      expect(p).toMatchObject({ version: b, nodes: null, by: 'migration' });
      expect(b).toBeGreaterThan(a);
      expect((await store.getModelMeta(old.pool, a))?.prunedAt).toBeNull();
    } finally {
      await old.close();
    }
  });
});

describe('promotions', () => {
  it('a fleet promotion covers every node; a canary only the nodes it names, until the next fleet promotion', async () => {
    const v1 = await publish(0.01);
    const v2 = await publish(0.02);
    const heard: PromotionNotice[] = [];
    const listener = listenForPromotions(db.url, (p) => heard.push(p), () => {}, () => {});
    await new Promise((r) => setTimeout(r, 300));
    const p1 = await fleet(v1);
    await canary(v2, ['node-1']);
    expect((await promotedFor(db.pool, 'node-0'))?.version).toBe(v1);
    expect(await promotedFor(db.pool, 'node-1')).toMatchObject({ version: v2, nodes: ['node-1'] });
    expect((await promotedFor(db.pool))?.version).toBe(v1);
    await fleet(v2);
    expect(await promotedFor(db.pool, 'node-0')).toMatchObject({ version: v2, nodes: null });
    expect(await promotedFor(db.pool, 'node-1')).toMatchObject({ version: v2, nodes: null });
    await vi.waitFor(() => expect(heard.map((h) => h.version)).toEqual([v1, v2, v2]), { timeout: 5000 });
    await listener.close();
    expect(heard[1]!.nodes).toEqual(['node-1']);
    // History, newest first; node-0 never saw the canary.
    const history = await promotionHistory(db.pool, { nodeId: 'node-0' });
    expect(history.map((h) => h.version).slice(0, 2)).toEqual([v2, v1]);
    expect(history.find((h) => h.id === p1.id)?.reason).toBe('fleet');
    expect((await promotionHistory(db.pool, { nodeId: 'node-1' })).slice(0, 3).map((h) => h.nodes)).toEqual([null, ['node-1'], null]);
  });

  it('refuses an unknown version, a version failing its integrity check and a pruned version, with codes', async () => {
    expect(await rejection(fleet(987654))).toBe('model_not_found');
    const bad = await store.publishModel(db.pool, { ...weights(0.3), checksum: 'ab'.repeat(32) });
    expect(await rejection(fleet(bad))).toBe('model_corrupt');
    const pruned = await publish(0.4);
    await db.pool.query(`UPDATE model_versions SET bytes = '\\x'::bytea, pruned_at = now() WHERE version = $1`, [pruned]);
    expect(await rejection(fleet(pruned))).toBe('model_pruned');
    expect((await promotionHistory(db.pool, { limit: 500 })).some((p) => [bad, pruned].includes(p.version))).toBe(false);
  });
});

describe('a serving function (ModelHolder) follows promotions only', () => {
  it('serves nothing before a promotion, the canary for its node, a rollback to an older version, and refuses a corrupt promotion', async () => {
    const fresh = await createTestDatabase();
    try {
      const holder = new ModelHolder(fresh.pool, quietLog, undefined, 'node-1');
      const other = new ModelHolder(fresh.pool, quietLog, undefined, 'node-0');
      const v1 = await store.publishModel(fresh.pool, weights(0.01));
      expect(await holder.refresh()).toBeUndefined(); // published, not promoted: not ready
      await promote(fresh.pool, { version: v1, by: 'test', reason: 'first' });
      expect(await holder.refresh()).toMatchObject({ version: v1, canary: false });
      const v2 = await store.publishModel(fresh.pool, weights(0.02));
      const v3 = await store.publishModel(fresh.pool, weights(0.03));
      expect((await holder.refresh())?.version).toBe(v1); // newer candidates change nothing
      await promote(fresh.pool, { version: v2, nodes: ['node-1'], by: 'test', reason: 'canary' });
      expect(await holder.refresh()).toMatchObject({ version: v2, canary: true });
      expect(await other.refresh()).toMatchObject({ version: v1, canary: false });
      // Each one reported what it serves (the aggregator reads this; it never wakes a function to ask).
      await vi.waitFor(async () => expect((await listServing(fresh.pool)).map((r) => [r.nodeId, r.version, r.canary])).toEqual([['node-0', v1, false], ['node-1', v2, true]]));
      const anonymous = new ModelHolder(fresh.pool, quietLog); // no node id: fleet promotions only
      expect(await anonymous.refresh()).toMatchObject({ version: v1, canary: false });
      // The same version promoted to the fleet: no reload, the canary flag clears.
      const loadedAt = holder.current!.loadedAt;
      await promote(fresh.pool, { version: v2, by: 'test', reason: 'fleet' });
      expect(await holder.refresh()).toMatchObject({ version: v2, canary: false, loadedAt });
      expect((await other.refresh())?.version).toBe(v2);
      // Rollback: an older version promoted again is loaded, although it is not newer.
      await promote(fresh.pool, { version: v1, by: 'test', reason: 'rollback' });
      expect((await holder.onPromotion())?.version).toBe(v1);
      // A promoted version whose bytes rotted is refused; the last good one keeps serving.
      await promote(fresh.pool, { version: v3, by: 'test', reason: 'bit rot follows' });
      await fresh.pool.query('UPDATE model_versions SET bytes = set_byte(bytes, 100, get_byte(bytes, 100) # 255) WHERE version = $1', [v3]);
      expect((await holder.refresh())?.version).toBe(v1);
      // A restart (a new holder) brings back the promoted version's newest good predecessor, not the newest version.
      const v4 = await store.publishModel(fresh.pool, weights(0.04));
      const restarted = new ModelHolder(fresh.pool, quietLog, undefined, 'node-1');
      expect((await restarted.refresh())?.version).toBe(v1);
      expect(v4).toBeGreaterThan(v1);
    } finally {
      await fresh.close();
    }
  });
});

describe('retention', () => {
  it('is configured by EDGEFL_RETENTION: off by default, on, or a validated JSON policy', () => {
    expect(retentionFromEnv(undefined)).toBeUndefined();
    expect(retentionFromEnv('off')).toBeUndefined();
    expect(retentionFromEnv('on')).toEqual(DEFAULT_RETENTION);
    expect(retentionFromEnv('{"keepCandidates":3}')).toEqual({ ...DEFAULT_RETENTION, keepCandidates: 3 });
    expect(() => retentionFromEnv('{"keepCandidates":0}')).toThrow(/keepCandidates/);
    expect(() => retentionFromEnv('{"keep":3}')).toThrow(/EDGEFL_RETENTION/);
    expect(() => retentionFromEnv('yes')).toThrow(/'on', 'off' or a JSON policy/);
  });

  it('picks each run’s best by the deciding figure', () => {
    const best = bestOfRuns([
      { runId: 'a', version: 1, metrics: { globalAccuracy: 0.5 } },
      { runId: 'a', version: 2, metrics: { globalAccuracy: 0.9, validationAccuracy: 0.6 } },
      { runId: 'a', version: 3, metrics: { globalAccuracy: 0.7, validationAccuracy: 0.8 } },
      { runId: 'b', version: 4, metrics: { globalAccuracy: 0.4 } },
    ]);
    expect(Object.fromEntries(best)).toEqual({ a: 3, b: 4 });
  });

  it('prunes old candidates and finished rounds’ updates, never the promoted version, its rollback targets, a run’s best or a running run’s base', async () => {
    const fresh = await createTestDatabase();
    const pool = fresh.pool;
    try {
      const init = await store.publishModel(pool, { ...weights(0), round: 0, runId: 'run-r' });
      await store.createRun(pool, 'run-r', {}, init);
      const acc = [0.5, 0.9, 0.7, 0.6];
      const versions: number[] = [];
      for (let r = 1; r <= acc.length; r++) {
        await store.openRound(pool, { runId: 'run-r', round: r, config: {}, baseVersion: init, selected: ['node-0'], quorum: 1, deadline: new Date(Date.now() + 60_000) });
        await store.insertUpdate(pool, { runId: 'run-r', round: r, nodeId: 'node-0', baseVersion: init, ...weights(r), sampleCount: 10, metrics: {}, durationMs: 1 });
        versions.push(await store.completeRound(pool, 'run-r', r, { ...weights(r / 10), runId: 'run-r', round: r }, { globalAccuracy: acc[r - 1] }, 0.9));
      }
      // Round 5 is running: its update and base stay.
      await store.openRound(pool, { runId: 'run-r', round: 5, config: {}, baseVersion: versions[3]!, selected: ['node-0'], quorum: 1, deadline: new Date(Date.now() + 60_000) });
      await store.insertUpdate(pool, { runId: 'run-r', round: 5, nodeId: 'node-0', baseVersion: versions[3]!, ...weights(5), sampleCount: 10, metrics: {}, durationMs: 1 });
      const [r1, r2, r3] = versions as [number, number, number, number];
      await promote(pool, { version: r1, by: 'test', reason: 'older' });
      await promote(pool, { version: r3, by: 'test', reason: 'current' });
      const extra: number[] = [];
      for (let i = 0; i < 4; i++) extra.push(await store.publishModel(pool, weights(0.5 + i / 100)));
      const policy = RetentionPolicy.parse({ keepCandidates: 2, keepRollbackTargets: 1 });

      const dry = await applyRetention(pool, policy, true);
      const kept = Object.fromEntries(dry.kept.map((k) => [k.version, k.why]));
      expect(kept[r3]).toContain('promoted');
      expect(kept[r1]).toContain('rollback target');
      expect(kept[r2]).toContain('best of run-r');
      expect(kept[versions[3]!]).toContain('running run');
      expect(kept[extra[3]!]).toContain('newest');
      expect(dry.prunedVersions).toEqual([init, extra[0], extra[1]]);
      expect(dry.prunedUpdates).toBe(4);
      expect(dry.prunedUpdateBytes).toBeGreaterThan(4 * 1_000_000);
      // A dry run changes nothing.
      expect((await store.getModelMeta(pool, init))?.prunedAt).toBeNull();
      expect((await pool.query('SELECT count(*)::int AS n FROM client_updates')).rows[0].n).toBe(5);

      const done = await applyRetention(pool, policy, false);
      expect(done.prunedVersions).toEqual(dry.prunedVersions);
      expect((await store.getModelMeta(pool, init))?.prunedAt).not.toBeNull();
      expect((await store.getModel(pool, init))?.bytes.length).toBe(0);
      expect((await store.listUpdates(pool, 'run-r', 5)).length).toBe(1);
      expect((await pool.query('SELECT count(*)::int AS n FROM client_updates')).rows[0].n).toBe(1);
      for (const v of [r1, r2, r3, versions[3]!, extra[2]!, extra[3]!]) {
        const m = (await store.getModel(pool, v))!;
        expect(() => verifyWeights(m)).not.toThrow();
      }
      // Rolling back to a protected target works; to a pruned candidate it is refused.
      expect((await promote(pool, { version: r1, by: 'test', reason: 'rollback' }, verifyWeights)).version).toBe(r1);
      expect(await rejection(promote(pool, { version: extra[0]!, by: 'test', reason: 'x' }, verifyWeights))).toBe('model_pruned');
      // A second pass finds nothing more to prune.
      expect((await applyRetention(pool, policy, false)).prunedVersions).toEqual([]);
    } finally {
      await fresh.close();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { referenceModelSpec, specSize } from '../services/core/model.js';
import { openDatabase } from '../services/store/database.js';
import { listenForModels } from '../services/store/listen.js';
import { MIGRATIONS, migrate } from '../services/store/migrations.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

function weights(fill: number) {
  const flat = new Float32Array(specSize(referenceModelSpec())).fill(fill);
  const bytes = encodeWeights(referenceModelSpec(), flat);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
}

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

describe('migrations', () => {
  it('are idempotent and safe when several processes apply them at once', async () => {
    const results = await Promise.all([migrate(db.pool), migrate(db.pool), migrate(db.pool)]);
    expect(results.flat()).toEqual([]);
    const rows = await db.pool.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
  });
});

describe('model versions', () => {
  it('are monotonic, keep their bytes, and are announced with NOTIFY after commit', async () => {
    const heard: number[] = [];
    const listener = listenForModels(db.url, (v) => heard.push(v), () => {}, () => {});
    await new Promise((r) => setTimeout(r, 300));
    const v1 = await store.publishModel(db.pool, { ...weights(0.1), metrics: { accuracy: 0.5 } });
    const v2 = await store.publishModel(db.pool, { ...weights(0.2), parentVersion: v1 });
    expect(v2).toBeGreaterThan(v1);
    const latest = await store.getLatestModel(db.pool);
    expect(latest?.version).toBe(v2);
    expect(latest?.parentVersion).toBe(v1);
    expect(sha256Hex(latest!.bytes)).toBe(latest!.checksum);
    expect((await store.getModelMeta(db.pool, v1))?.metrics).toEqual({ accuracy: 0.5 });
    // A rolled-back publish is neither stored nor announced.
    await expect(
      store.inTransaction(db.pool, async (c) => {
        await store.insertModelVersion(c, weights(0.3));
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    await new Promise((r) => setTimeout(r, 300));
    await listener.close();
    expect(heard).toEqual([v1, v2]);
    expect(await store.latestVersion(db.pool)).toBe(v2);
  });
});

describe('runs, rounds and updates', () => {
  it('stores one update per (run, round, node) and completes a round exactly once', async () => {
    const base = await store.publishModel(db.pool, weights(0));
    await store.createRun(db.pool, 'run-a', { rounds: 3 }, base);
    const round = await store.openRound(db.pool, { runId: 'run-a', round: 1, config: {}, baseVersion: base, selected: ['node-0', 'node-1'], quorum: 1, deadline: new Date(Date.now() + 60_000) });
    expect(round.status).toBe('running');
    // Re-opening a running round returns it unchanged (a resumed aggregator).
    const again = await store.openRound(db.pool, { runId: 'run-a', round: 1, config: {}, baseVersion: base, selected: ['node-0'], quorum: 1, deadline: new Date() });
    expect(again.selected).toEqual(['node-0', 'node-1']);
    const u = { runId: 'run-a', round: 1, nodeId: 'node-0', baseVersion: base, ...weights(1), sampleCount: 10, metrics: { loss: 1 }, durationMs: 5 };
    const first = await store.insertUpdate(db.pool, u);
    const second = await store.insertUpdate(db.pool, { ...u, metrics: { loss: 2 } });
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.update.id).toBe(first.update.id);
    expect(second.update.metrics).toEqual({ loss: 1 });
    const momentum = Buffer.from(new Float32Array([0.5, -0.25]).buffer);
    const v = await store.completeRound(db.pool, 'run-a', 1, { ...weights(0.5), runId: 'run-a', round: 1, parentVersion: base }, { globalAccuracy: 0.9 }, 0.9, momentum);
    expect(await store.getStrategyState(db.pool, 'run-a')).toEqual(momentum);
    const v2 = await store.completeRound(db.pool, 'run-a', 1, { ...weights(0.6), runId: 'run-a', round: 1, parentVersion: base }, { globalAccuracy: 0.95 }, 0.95);
    expect(v2).toBe(v);
    const run = await store.getRun(db.pool, 'run-a');
    expect(run?.latestVersion).toBe(v);
    expect((await store.listRounds(db.pool, 'run-a'))[0]).toMatchObject({ status: 'completed', globalVersion: v });
    const count = await db.pool.query('SELECT count(*)::int AS n FROM model_versions WHERE run_id = $1', ['run-a']);
    expect(count.rows[0].n).toBe(1);
  });

  it('reopens a failed round as a new attempt', async () => {
    const base = await store.publishModel(db.pool, weights(0));
    await store.createRun(db.pool, 'run-b', {}, base);
    await store.openRound(db.pool, { runId: 'run-b', round: 1, config: {}, baseVersion: base, selected: ['node-0'], quorum: 1, deadline: new Date(Date.now() + 1000) });
    await store.failRound(db.pool, 'run-b', 1, { reason: 'test' });
    const reopened = await store.openRound(db.pool, { runId: 'run-b', round: 1, config: {}, baseVersion: base, selected: ['node-1'], quorum: 1, deadline: new Date(Date.now() + 1000) });
    expect(reopened).toMatchObject({ status: 'running', attempt: 2, selected: ['node-1'] });
  });
});

describe('embedded PostgreSQL', () => {
  it('keeps every model across a restart of the server', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-restart-'));
    chmodSync(dir, 0o755);
    try {
      const first = await openDatabase({ dataDir: dir, stopEmbeddedOnClose: true });
      const v = await store.publishModel(first.pool, weights(0.25));
      await first.close();
      const second = await openDatabase({ dataDir: dir, stopEmbeddedOnClose: true });
      const back = await store.getModel(second.pool, v);
      await second.close();
      expect(back?.checksum).toBe(weights(0.25).checksum);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

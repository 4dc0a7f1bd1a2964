import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cluster, publishInitialModel } from '../bench/lib/chaos-cluster.js';
import { servingSigterm, trainerKill9 } from '../bench/lib/chaos-faults.js';
import { edgeflCli } from '../services/harness/process.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { publishPromoted } from './helpers/promote.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { quietLog } from './helpers/federation.js';

/** Real processes (dist/ must be built: npm test builds it first). Bounded: about a minute. */
const built = existsSync(edgeflCli());
let db: TestDatabase;
let cluster: Cluster | undefined;
let logDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  logDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-chaos-test-'));
});
afterAll(async () => {
  await cluster?.stop();
  await db?.close();
  rmSync(logDir, { recursive: true, force: true });
});

describe.skipIf(!built)('faults in a federation of real processes', () => {
  beforeAll(async () => {
    cluster = new Cluster({ databaseUrl: db.url, samples: 150, logDir, withServing: true });
    await publishInitialModel(db.pool);
    await cluster.start();
  });

  it('kill -9 of a trainer mid-training: the round completes with the quorum, nothing partial is stored, the restarted node rejoins', async () => {
    const t = await trainerKill9(cluster!, 2, { roundTimeoutS: 10 });
    expect(t.roundStatus).toBe('completed');
    expect(t.participants).toEqual(['node-0', 'node-1']);
    expect(['late', 'failed']).toContain(t.victimStatus);
    expect(t.partialStored).toBe(false);
    expect(t.rejoined).toBe(true);
    expect(t.problems).toEqual([]);
    const updates = await store.listRunUpdates(db.pool, t.runId);
    expect(updates.filter((u) => u.nodeId === 'node-2').map((u) => u.round)).not.toContain(1);
  });

  it('SIGTERM to a serving function under load: every accepted request finishes, then it exits 0', async () => {
    const s = await servingSigterm(cluster!.serving!, 16, 32);
    console.log(`serving SIGTERM: ${s.ok}/${s.accepted} in-flight requests answered; exit ${s.exitCode}; refused after: ${s.refusedAfter}; errors ${s.errors.join(', ')}`);
    expect(s.failed).toBe(0);
    expect(s.ok).toBe(16);
    expect(s.exitCode).toBe(0);
    expect(s.refusedAfter).toBe(true);
  });
});

describe('a stored version whose bytes no longer match its checksum', () => {
  it('is refused by serving, which keeps the previous one', async () => {
    await initBackend();
    const weights = (seed: number) => {
      const m = buildModel(seed);
      const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(m));
      m.dispose();
      return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
    };
    const holder = new ModelHolder(db.pool, quietLog);
    const good = await publishPromoted(db.pool, weights(3));
    expect((await holder.refresh())?.version).toBe(good);
    // bit rot after the checksum was written
    const bad = await publishPromoted(db.pool, weights(4));
    await db.pool.query('UPDATE model_versions SET bytes = set_byte(bytes, 100, get_byte(bytes, 100) # 255) WHERE version = $1', [bad]);
    expect((await holder.onPromotion())?.version).toBe(good);
    expect(bad).toBeGreaterThan(good);
    expect((await holder.refresh())?.version).toBe(good);
    expect(holder.current?.checksum).toBe(weights(3).checksum);
  });
});

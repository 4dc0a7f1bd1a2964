import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Federation } from '../aggregator/federation.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { encodeStoredWeights } from '../services/core/codec.js';
import { referenceModelSpec, specSize } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, createFederation, hangingTrainer, serve, shards, startTrainer, statusTrainer, targetsOf, testData, waitFor, waitRunDone, type Running } from './helpers/federation.js';

/** Stop, abort, resume: a run's rounds never outlive it, and what a restart must not forget. */
let db: TestDatabase;
let trainer: Running;
let hang: Running;
let err400: Running;
/** Holds each request until the test opens it, then passes it to the real trainer. */
let gated: Running;
let openGate: () => void = () => {};
let gate: Promise<void> = Promise.resolve();
let federation: Federation;
let targets: TrainerTarget[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const data = await testData();
  trainer = await startTrainer(db.pool, 'node-0', shards(data.train, 1, 100)[0]!);
  [hang, err400] = await Promise.all([hangingTrainer(), statusTrainer(400)]);
  gated = await serve(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    await gate;
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('ce-') || ['content-type', 'authorization', 'x-request-id'].includes(k))) as Record<string, string>;
    const out = await fetch(trainer.url + req.url, { method: req.method, headers, body: Buffer.concat(chunks) });
    res.writeHead(out.status, { 'content-type': out.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await out.arrayBuffer()));
  });
  targets = targetsOf({ 'node-0': gated, hang, err400 });
  federation = await createFederation(db.pool, data.test, () => targets);
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([trainer, gated, hang, err400].filter(Boolean).map((r) => r.close()));
  await db?.close();
});

const published = async (runId: string) => (await db.pool.query('SELECT count(*)::int AS n FROM model_versions WHERE run_id = $1', [runId])).rows[0].n as number;

/** A run as a previous aggregator process left it: in the store, driven by nobody. */
async function runInStore(id: string, body: Record<string, unknown>, checksum?: string) {
  const weights = encodeStoredWeights(referenceModelSpec(), new Float32Array(specSize(referenceModelSpec())));
  const version = await store.publishModel(db.pool, { ...weights, checksum: checksum ?? weights.checksum, runId: id, round: 0 });
  await store.createRun(db.pool, id, parseRunConfig(body), version);
  return version;
}

describe('stop and abort', () => {
  /** A run whose first round is open and whose node trains only once the gate opens. */
  async function inRoundOne(nodes: string[]) {
    gate = new Promise((resolve) => (openGate = resolve));
    const run = await federation.startRun(parseRunConfig({ ...FAST, rounds: 50, roundTimeoutS: 120, nodes }));
    await waitFor('round 1 to start', async () => (await store.getRound(db.pool, run.id, 1)) !== undefined);
    return run;
  }

  it('stop means after the current round: the round in progress still completes and publishes; no further round starts', async () => {
    const run = await inRoundOne(['node-0']);
    expect(await federation.stop(run.id)).toBe(true);
    openGate();
    const done = await waitRunDone(db.pool, run.id, 60_000);
    expect(done).toMatchObject({ status: 'stopped', stopReason: 'stop requested' });
    const rows = await store.listRounds(db.pool, run.id);
    expect(rows.map((r) => [r.round, r.status])).toEqual([[1, 'completed']]);
    expect(done.latestVersion).toBe(rows[0]!.globalVersion);
    await vi.waitFor(() => expect(federation.isDriving(run.id)).toBe(false));
  });

  it('abort stops now: the round in progress is closed as failed and publishes nothing', async () => {
    const run = await inRoundOne(['node-0', 'hang']);
    expect(await federation.abort(run.id)).toBe(true);
    openGate();
    // well before the 120 s deadline the hanging node would hold the round open for
    const done = await waitRunDone(db.pool, run.id, 30_000);
    expect(done).toMatchObject({ status: 'stopped', stopReason: 'aborted by request' });
    await vi.waitFor(() => expect(federation.isDriving(run.id)).toBe(false));
    const rows = await store.listRounds(db.pool, run.id);
    expect(rows.map((r) => [r.round, r.status, r.globalVersion])).toEqual([[1, 'failed', null]]);
    expect(await published(run.id)).toBe(1);
    expect(await federation.abort(run.id)).toBe(false);
  });

  it('on start-up, a round left running by a run that has ended is closed as failed', async () => {
    const id = `run-orphan-${Date.now()}`;
    const version = await runInStore(id, {});
    await store.openRound(db.pool, { runId: id, round: 1, config: {}, baseVersion: version, selected: ['node-0'], quorum: 1, deadline: new Date(Date.now() + 60_000) });
    await store.finishRun(db.pool, id, 'stopped', 'stop requested');
    await federation.resumeAll();
    const round = (await store.getRound(db.pool, id, 1))!;
    expect(round.status).toBe('failed');
    expect(round.finishedAt).not.toBeNull();
  });
});

describe('resume', () => {
  it('maxRoundAttempts counts the attempts made before a restart', async () => {
    const id = `run-attempts-${Date.now()}`;
    const version = await runInStore(id, { ...FAST, rounds: 3, maxRoundAttempts: 2, nodes: ['err400'] });
    // the previous process made attempt 1 of round 1, which failed
    await store.openRound(db.pool, { runId: id, round: 1, config: {}, baseVersion: version, selected: ['err400'], quorum: 1, deadline: new Date(Date.now() + 60_000) });
    await store.failRound(db.pool, id, 1, { reason: 'only 0 of 1 nodes delivered; quorum is 1' });
    await federation.resumeAll();
    const done = await waitRunDone(db.pool, id);
    expect(done.status).toBe('failed');
    // one more attempt after the restart, not maxRoundAttempts more
    expect((await store.getRound(db.pool, id, 1))!.attempt).toBe(2);
    expect(done.stopReason).toMatch(/^round 1 failed 2 times/);
  });

  it('refuses a base model whose bytes do not match its stored checksum, before any trainer works on it', async () => {
    const id = `run-checksum-${Date.now()}`;
    await runInStore(id, { ...FAST, rounds: 1, nodes: ['node-0'] }, '0'.repeat(64));
    await federation.resumeAll();
    const done = await waitRunDone(db.pool, id);
    expect(done.status).toBe('failed');
    expect(done.stopReason).toMatch(/stored checksum does not match/);
    expect(await store.listRunUpdates(db.pool, id)).toHaveLength(0);
    expect(await published(id)).toBe(1);
  });
});

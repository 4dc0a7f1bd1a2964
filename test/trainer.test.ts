import { describe, expect, it } from 'vitest';
import { decodeWeights, encodeWeights, sha256Hex } from '../services/core/codec.js';
import { referenceModelSpec } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import {
  NODE, SHARD_SIZE, base, binaryHeaders, data, db, expectError, globalFlat, postBinary, postPlain, postStructured, updateRows, useTrainerFixture, v1,
} from './helpers/trainer-fixture.js';

// Invocation tokens: trainer-auth.test.ts.
useTrainerFixture();

/** The stored row must be this node's trained update of the global model. */
async function expectStoredUpdate(runId: string, round: number, updateId: number, checksum: string) {
  const rows = await updateRows(runId, round);
  expect(rows).toHaveLength(1);
  const row = rows[0]!;
  expect(Number(row.id)).toBe(updateId);
  expect(row.checksum).toBe(checksum);
  expect(sha256Hex(row.bytes)).toBe(row.checksum);
  expect(row.sample_count).toBe(SHARD_SIZE);
  expect(Number(row.base_version)).toBe(v1);
  const decoded = decodeWeights(row.bytes, referenceModelSpec());
  expect(decoded.flat.length).toBe(globalFlat.length);
  let maxDiff = 0;
  for (let i = 0; i < globalFlat.length; i++) maxDiff = Math.max(maxDiff, Math.abs(decoded.flat[i]! - globalFlat[i]!));
  expect(maxDiff).toBeGreaterThan(1e-5); // trained, not the global weights echoed back
  expect(maxDiff).toBeLessThan(10);
}

describe('trainer: training requests', () => {
  it('trains from a binary-mode CloudEvent and answers with a binary dev.edgefl.update.ready', async () => {
    const res = await postBinary(data({ round: 1 }));
    // The Eventing data-plane contract: a reply event comes with 200, never another 2xx.
    expect(res.status).toBe(200);
    expect(res.headers.get('ce-type')).toBe('dev.edgefl.update.ready');
    expect(res.headers.get('ce-specversion')).toBe('1.0');
    expect(res.headers.get('ce-source')).toBe(`/edgefl/trainer/${NODE}`);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const body = (await res.json()) as Record<string, any>;
    expect(body).toMatchObject({ runId: 'run-t', round: 1, nodeId: NODE, baseVersion: v1, sampleCount: SHARD_SIZE, created: true });
    expect(Number.isInteger(body.updateId)).toBe(true);
    expect(body.metrics.samples).toBe(SHARD_SIZE);
    expect(body.metrics.epochs).toBe(1);
    expect(Number.isFinite(body.metrics.loss)).toBe(true);
    expect(body.metrics.accuracy).toBeGreaterThanOrEqual(0);
    expect(body.metrics.accuracy).toBeLessThanOrEqual(1);
    await expectStoredUpdate('run-t', 1, body.updateId, body.checksum);
  });

  it('answers a structured-mode CloudEvent in structured mode', async () => {
    const res = await postStructured(data({ round: 2, proximalMu: 0.01 }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/cloudevents\+json/);
    expect(res.headers.get('ce-type')).toBeNull();
    const event = (await res.json()) as Record<string, any>;
    expect(event).toMatchObject({ specversion: '1.0', type: 'dev.edgefl.update.ready', source: `/edgefl/trainer/${NODE}` });
    expect(typeof event.id).toBe('string');
    expect(event.data).toMatchObject({ runId: 'run-t', round: 2, nodeId: NODE, baseVersion: v1, created: true });
    await expectStoredUpdate('run-t', 2, event.data.updateId, event.data.checksum);
  });

  it('accepts plain JSON and answers with the event data (binary mode)', async () => {
    const res = await postPlain(data({ round: 3, optimizer: 'sgd', learningRate: 0.01 }));
    expect(res.status).toBe(201);
    expect(res.headers.get('ce-type')).toBe('dev.edgefl.update.ready');
    const body = (await res.json()) as Record<string, any>;
    expect(body).toMatchObject({ runId: 'run-t', round: 3, created: true });
    await expectStoredUpdate('run-t', 3, body.updateId, body.checksum);
  });

  it('is idempotent: the same (run, round, node) returns the stored update and never a second row', async () => {
    const before = await updateRows('run-t', 1);
    expect(before).toHaveLength(1);
    const again = await postPlain(data({ round: 1, epochs: 2 }));
    expect(again.status).toBe(200);
    const body = (await again.json()) as Record<string, any>;
    expect(body.updateId).toBe(Number(before[0]!.id));
    expect(body.checksum).toBe(before[0]!.checksum);
    expect(body.created).toBe(false);
    // A repeat in structured mode answers in structured mode, same update.
    const structured = await postStructured(data({ round: 1 }));
    expect(structured.status).toBe(200);
    expect(((await structured.json()) as any).data.updateId).toBe(Number(before[0]!.id));
    const after = await updateRows('run-t', 1);
    expect(after).toHaveLength(1);
    expect(after[0]!.bytes.equals(before[0]!.bytes)).toBe(true);
  });

  it('trains one round at a time: a second request while busy gets 429 with Retry-After; health checks keep answering', async () => {
    // A second global version, so the trainer must read it from PostgreSQL (v1 is cached).
    // Holding a lock on model_versions keeps the first request inside its training round
    // (busy, waiting for the weights) for as long as the test needs, independent of CPU speed.
    const bytes = encodeWeights(referenceModelSpec(), globalFlat.map((v) => v * 0.5));
    const v2 = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
    const locker = await db.pool.connect();
    let finished = false;
    let long: Promise<Response | Error> | undefined;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE model_versions IN ACCESS EXCLUSIVE MODE');
      long = postPlain(data({ round: 10, modelVersion: v2, epochs: 2, batchSize: 8 })).then(
        (r) => ((finished = true), r),
        (e: unknown) => ((finished = true), e as Error),
      );
      let busy = false;
      for (let i = 0; i < 400 && !busy && !finished; i++) {
        const r = await fetch(`${base}/readyz`);
        expect(r.status).toBe(200);
        busy = ((await r.json()) as { busy: boolean }).busy;
        if (!busy) await new Promise((r) => setTimeout(r, 10));
      }
      expect(busy).toBe(true);
      const second = await postPlain(data({ round: 11 }));
      const e = await expectError(second, 429, 'busy');
      expect(e.message).toContain('round 10');
      const retry = Number(second.headers.get('retry-after'));
      expect(Number.isInteger(retry)).toBe(true);
      expect(retry).toBeGreaterThanOrEqual(1);
      // A request for another run is refused just the same.
      await expectError(await postBinary(data({ runId: 'run-other', round: 1 })), 429, 'busy');
      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
    } finally {
      await locker.query('COMMIT').catch(() => {});
      locker.release();
    }
    // Now it really trains; readiness keeps answering (busy) in the middle of it.
    let answeredWhileTraining = 0;
    while (!finished) {
      const r = await fetch(`${base}/readyz`);
      expect(r.status).toBe(200);
      const body = (await r.json()) as { busy: boolean };
      if (body.busy && !finished) answeredWhileTraining++;
    }
    expect(answeredWhileTraining).toBeGreaterThan(0);
    const first = await long!;
    expect(first).toBeInstanceOf(Response);
    expect((first as Response).status).toBe(201);
    const ev = (await (first as Response).json()) as Record<string, unknown>;
    expect(ev.baseVersion).toBe(v2);
    expect(await updateRows('run-t', 11)).toHaveLength(0);
    expect(await db.pool.query('SELECT 1 FROM client_updates WHERE run_id = $1', ['run-other'])).toHaveProperty('rowCount', 0);
    const rows = await updateRows('run-t', 10);
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.base_version)).toBe(v2);
    const after = await fetch(`${base}/readyz`);
    expect(((await after.json()) as { busy: boolean }).busy).toBe(false);
  });

  it('refuses a round past its deadline with 410 (not retryable for a broker) and stores nothing', async () => {
    const res = await postBinary(data({ round: 20, deadline: new Date(Date.now() - 1000).toISOString() }));
    await expectError(res, 410, 'deadline_passed');
    expect(await updateRows('run-t', 20)).toHaveLength(0);
  });

  it('discards a training that runs past its deadline (410, nothing stored)', async () => {
    const res = await postPlain(data({ round: 21, epochs: 50, deadline: Date.now() + 1500 }));
    const e = await expectError(res, 410, 'deadline_passed');
    expect(e.message).toMatch(/during training/);
    expect(await updateRows('run-t', 21)).toHaveLength(0);
    const ready = await fetch(`${base}/readyz`);
    expect(((await ready.json()) as { busy: boolean }).busy).toBe(false);
  });

  it('refuses a round the aggregator has already closed with 410', async () => {
    await store.createRun(db.pool, 'run-closed', {}, v1);
    await store.openRound(db.pool, { runId: 'run-closed', round: 1, config: {}, baseVersion: v1, selected: [NODE], quorum: 1, deadline: new Date(Date.now() + 60_000) });
    await store.failRound(db.pool, 'run-closed', 1, { reason: 'test' });
    const res = await postPlain(data({ runId: 'run-closed', round: 1 }));
    await expectError(res, 410, 'round_closed');
    expect(await updateRows('run-closed', 1)).toHaveLength(0);
  });

  it('answers 422 (404 would be retried by a broker) for a global model version that does not exist, storing nothing', async () => {
    const res = await postPlain(data({ round: 30, modelVersion: v1 + 1000 }));
    await expectError(res, 422, 'model_version_not_found');
    expect(await updateRows('run-t', 30)).toHaveLength(0);
    // The node is not left busy by the failure.
    expect(((await (await fetch(`${base}/readyz`)).json()) as { busy: boolean }).busy).toBe(false);
  });
});

describe('trainer: malformed requests', () => {
  const cases: [string, () => Promise<Response>, number, string?][] = [
    ['body that is not JSON', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"runId": ' }), 400, 'invalid_json'],
    ['empty body', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/json' } }), 400, 'empty_body'],
    ['text/plain body', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(data()) }), 415, 'unsupported_media_type'],
    ['binary CE with non-JSON data', () => fetch(`${base}/`, { method: 'POST', headers: { ...binaryHeaders(), 'content-type': 'text/plain' }, body: 'x' }), 415],
    ['binary CE of the wrong type', () => fetch(`${base}/`, { method: 'POST', headers: binaryHeaders('dev.edgefl.update.ready'), body: JSON.stringify(data({ round: 40 })) }), 400, 'wrong_event_type'],
    ['structured CE of the wrong type', () => postStructured(data({ round: 40 }), 'com.example.other'), 400, 'wrong_event_type'],
    ['structured CE that is not JSON', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: '{{' }), 400, 'invalid_json'],
    ['structured CE without source/id', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify({ specversion: '1.0', type: 'dev.edgefl.round.train', data: data() }) }), 400],
    ['structured CE without data', () => fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify({ specversion: '1.0', type: 'dev.edgefl.round.train', source: '/x', id: '1' }) }), 400],
    ['JSON array', () => postPlain([data()]), 400, 'invalid_body'],
    ['JSON null', () => postPlain(null), 400, 'invalid_body'],
    ['missing runId', () => postPlain({ ...data(), runId: undefined }), 400, 'missing_field'],
    ['missing round', () => postBinary({ ...data(), round: undefined }), 400, 'missing_field'],
    ['missing modelVersion', () => postPlain({ ...data(), modelVersion: undefined }), 400, 'missing_field'],
    ['negative epochs', () => postPlain(data({ round: 41, epochs: -1 })), 400, 'invalid_field'],
    ['fractional epochs', () => postPlain(data({ round: 41, epochs: 1.5 })), 400, 'invalid_field'],
    ['epochs as a string', () => postPlain(data({ round: 41, epochs: '2' })), 400, 'invalid_field'],
    ['huge batch size', () => postPlain(data({ round: 41, batchSize: 1_000_000 })), 400, 'invalid_field'],
    ['zero learning rate', () => postPlain(data({ round: 41, learningRate: 0 })), 400, 'invalid_field'],
    ['negative proximalMu', () => postPlain(data({ round: 41, proximalMu: -1 })), 400, 'invalid_field'],
    ['unknown optimizer', () => postPlain(data({ round: 41, optimizer: 'lbfgs' })), 400, 'invalid_field'],
    ['round 0', () => postPlain(data({ round: 0 })), 400, 'invalid_field'],
    ['runId with odd characters', () => postPlain(data({ runId: "x'; DROP TABLE client_updates;--" })), 400, 'invalid_field'],
    ['unparseable deadline', () => postPlain(data({ round: 41, deadline: 'tomorrow-ish' })), 400, 'invalid_field'],
    ['body over maxBodyBytes', () => postPlain({ ...data({ round: 41 }), pad: 'x'.repeat(9000) }), 413, 'body_too_large'],
  ];
  for (const [name, send, status, code] of cases) {
    it(`${name} → ${status}`, async () => {
      await expectError(await send(), status, code);
    });
  }

  it('stored nothing for any malformed request', async () => {
    expect(await updateRows('run-t', 40)).toHaveLength(0);
    expect(await updateRows('run-t', 41)).toHaveLength(0);
    const r = await db.pool.query('SELECT count(*)::int AS n FROM client_updates');
    expect(r.rows[0].n).toBe(4); // rounds 1, 2, 3 and 10
  });

  it('serves /, /healthz and /readyz, and 404s unknown routes in the error shape', async () => {
    expect(await (await fetch(`${base}/`)).json()).toMatchObject({ service: 'edgefl-trainer', node: NODE, samples: SHARD_SIZE, busy: null });
    await expectError(await fetch(`${base}/nope`), 404, 'route_not_found');
  });
});

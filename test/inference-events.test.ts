import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { PIXELS, buildModel, getFlatWeights } from '../services/core/model.js';
import { createLogger } from '../services/shared/log.js';
import express from 'express';
import { predictionRoutes } from '../aggregator/prediction-routes.js';
import { applyErrorHandlers } from '../services/http/common.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { digitPng, heldOutDigits, weightsRow } from './helpers/digits.js';
import { publishPromoted } from './helpers/promote.js';
import { serverGroup } from './helpers/serve.js';

const quiet = createLogger({}, 'error', () => {});
const servers = serverGroup();
const digits = heldOutDigits(8);
let db: TestDatabase;
let url: string; // serving with a model, objects under `objects`
let cold: string; // serving with no model loaded yet
let keyed: string; // serving with an API key
let version: number;
let objects: string;

const requested = 'dev.edgefl.inference.requested';
const b64 = (b: Buffer) => b.toString('base64');
const png = (i: number) => b64(digitPng(digits, i));

beforeAll(async () => {
  await initBackend('cpu');
  db = await createTestDatabase();
  const model = buildModel(1);
  version = await publishPromoted(db.pool, weightsRow(getFlatWeights(model)));
  model.dispose();
  const holder = new ModelHolder(db.pool, quiet, undefined, 'node-0');
  await holder.refresh();
  objects = mkdtempSync(path.join(os.tmpdir(), 'edgefl-objects-'));
  mkdirSync(path.join(objects, 'digits'));
  writeFileSync(path.join(objects, 'digits', 'three.png'), digitPng(digits, 0));
  writeFileSync(path.join(os.tmpdir(), 'edgefl-outside.png'), digitPng(digits, 0));
  symlinkSync(path.join(os.tmpdir(), 'edgefl-outside.png'), path.join(objects, 'digits', 'escape.png'));
  const deps = { log: quiet, nodeId: 'node-0', maxBatch: 64, maxBodyBytes: 4 * 2 ** 20, pool: db.pool };
  url = (await servers.listen(createServingApp({ ...deps, holder, objectRoot: objects }))).url;
  cold = (await servers.listen(createServingApp({ ...deps, holder: new ModelHolder(db.pool, quiet) }))).url;
  keyed = (await servers.listen(createServingApp({ ...deps, holder, apiKeys: ['k'.repeat(32)] }))).url;
}, 120_000);

afterAll(async () => {
  await servers.closeAll();
  await db?.close();
  rmSync(objects, { recursive: true, force: true });
});

const binary = (base: string, id: string, data: unknown, extra: Record<string, string> = {}) =>
  fetch(`${base}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': id, 'ce-source': '/test/inbox', 'ce-type': requested, ...extra },
    body: JSON.stringify(data),
  });
const plain = (data: unknown) => fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(data) });

interface Completed {
  request_id: string;
  model_version: number;
  count: number;
  results: number;
  errors: number;
  replayed: boolean;
  predictions: { item: number; source: string; class?: number; probabilities?: number[]; error?: { code: string; message: string } }[];
}

async function storedRows(requestId: string): Promise<number> {
  return Number((await db.pool.query('SELECT count(*) AS n FROM predictions WHERE request_id = $1', [requestId])).rows[0].n);
}

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
}

describe('inference.requested → inference.completed', () => {
  it('binary mode: the reply is a binary-mode completed event; each image is stored once and readable by request id', async () => {
    const res = await binary(url, 'evt-1', { images: [{ name: 'a.png', data: png(0) }, { name: 'b.png', data: png(1) }] });
    expect(res.status).toBe(200);
    expect(res.headers.get('ce-type')).toBe('dev.edgefl.inference.completed');
    expect(res.headers.get('ce-source')).toBe('/edgefl/serving/node-0');
    const body = (await res.json()) as Completed;
    expect(body).toMatchObject({ model_version: version, count: 2, results: 2, errors: 0, replayed: false });
    expect(body.predictions.map((p) => p.source)).toEqual(['a.png', 'b.png']);
    for (const p of body.predictions) {
      expect(p.probabilities).toHaveLength(10);
      expect(p.probabilities!.indexOf(Math.max(...p.probabilities!))).toBe(p.class);
    }
    expect(await storedRows(body.request_id)).toBe(2);

    const got = await fetch(`${url}/v1/predictions/${body.request_id}`);
    expect(got.status).toBe(200);
    const stored = (await got.json()) as { total: number; predictions: { source: string; class: number; node: string; model_version: number }[] };
    expect(stored.total).toBe(2);
    expect(stored.predictions.map((p) => [p.source, p.class, p.node, p.model_version])).toEqual(body.predictions.map((p) => [p.source, p.class, 'node-0', version]));
    const list = (await (await fetch(`${url}/v1/predictions?node=node-0&limit=1000`)).json()) as { predictions: { request_id: string }[] };
    expect(list.predictions.filter((p) => p.request_id === body.request_id)).toHaveLength(2);
    const other = (await (await fetch(`${url}/v1/predictions?node=node-9`)).json()) as { predictions: unknown[] };
    expect(other.predictions).toEqual([]);
  });

  it('structured mode: the reply is a structured completed event', async () => {
    const event = { specversion: '1.0', id: 'evt-s', source: '/test/inbox', type: requested, datacontenttype: 'application/json', data: { images: [{ data: png(2) }] } };
    const res = await fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/cloudevents\+json/);
    const reply = (await res.json()) as { type: string; source: string; data: Completed };
    expect(reply.type).toBe('dev.edgefl.inference.completed');
    expect(reply.data).toMatchObject({ count: 1, results: 1, errors: 0 });
  });

  it('a redelivered event (same source and id) returns the stored results and stores nothing more', async () => {
    const first = (await (await binary(url, 'evt-again', { images: [{ data: png(3) }] })).json()) as Completed;
    const again = (await (await binary(url, 'evt-again', { images: [{ data: png(3) }] })).json()) as Completed;
    expect(again.request_id).toBe(first.request_id);
    expect(again.replayed).toBe(true);
    expect(first.replayed).toBe(false);
    expect(again.predictions).toEqual(first.predictions);
    expect(await storedRows(first.request_id)).toBe(1);
  });

  it('a corrupt image becomes an error record beside the others’ results; the event still succeeds', async () => {
    const truncated = digitPng(digits, 4).subarray(0, 60);
    const res = await plain({ request_id: 'mixed-1', images: [{ name: 'ok.png', data: png(4) }, { name: 'bad.png', data: b64(truncated) }, { name: 'text.png', data: b64(Buffer.from('not an image')) }] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Completed;
    expect(body).toMatchObject({ request_id: 'mixed-1', count: 3, results: 1, errors: 2 });
    expect(body.predictions[1]!.error!.code).toBe('undecodable_image');
    expect(body.predictions[2]!.error!.code).toBe('unsupported_image');
    const rows = (await db.pool.query('SELECT item, class, error_code FROM predictions WHERE request_id = $1 ORDER BY item', ['mixed-1'])).rows;
    expect(rows.map((r) => [r.item, r.class === null, r.error_code])).toEqual([[0, false, null], [1, true, 'undecodable_image'], [2, true, 'unsupported_image']]);
  });

  it('a batch in UINT8 tensor chunks (offset) is one request; GET pages through it', async () => {
    const rowsOf = (from: number, n: number) => Buffer.from(Array.from(digits.images.subarray(from * PIXELS, (from + n) * PIXELS), (v) => Math.round(v * 255)));
    for (const offset of [0, 3]) {
      const res = await plain({ request_id: 'batch-1', source: 'batch.idx', offset, tensor: { datatype: 'UINT8', count: 3, data: b64(rowsOf(offset, 3)) } });
      expect(((await res.json()) as Completed).results).toBe(3);
    }
    const page = (await (await fetch(`${url}/v1/predictions/batch-1?offset=2&limit=3`)).json()) as { total: number; predictions: { item: number; source: string }[] };
    expect(page.total).toBe(6);
    expect(page.predictions.map((p) => [p.item, p.source])).toEqual([[2, 'batch.idx[2]'], [3, 'batch.idx[3]'], [4, 'batch.idx[4]']]);
  });

  it('object references resolve in the object store only; S3 bucket notifications are read as references', async () => {
    const res = await plain({ request_id: 'objects-1', objects: [{ key: 'digits/three.png' }, { key: '../edgefl-outside.png' }, { key: 'digits/escape.png' }, { key: 'digits/missing.png' }] });
    const body = (await res.json()) as Completed;
    expect(body.predictions.map((p) => p.error?.code ?? 'ok')).toEqual(['ok', 'invalid_object_key', 'invalid_object_key', 'object_not_found']);
    const notification = { EventName: 's3:ObjectCreated:Put', Key: 'digits/three.png', Records: [{ s3: { bucket: { name: 'digits' }, object: { key: 'three.png', eTag: 'abc123' } } }] };
    const s3 = (await (await plain(notification)).json()) as Completed;
    expect(s3.predictions).toMatchObject([{ source: 'digits/three.png', class: body.predictions[0]!.class }]);
    // The store re-sends the same notification: same request, replayed.
    const again = (await (await plain(notification)).json()) as Completed;
    expect(again).toMatchObject({ request_id: s3.request_id, replayed: true });
    expect(await storedRows(s3.request_id)).toBe(1);
  });
});

describe('refused events: a clear 4xx, and nothing stored', () => {
  it('malformed requests', async () => {
    await expectError(await binary(url, 'bad-type', { images: [{ data: png(0) }] }, { 'ce-type': 'dev.edgefl.round.train' }), 400, 'wrong_event_type');
    await expectError(await plain({ images: [{ data: png(0) }], tensor: { datatype: 'UINT8', count: 1, data: '' } }), 400, 'invalid_request');
    await expectError(await plain({ images: [] }), 400, 'invalid_request');
    await expectError(await plain({ images: [{ data: '***' }] }), 400, 'invalid_request');
    await expectError(await plain({ request_id: 'short', tensor: { datatype: 'UINT8', count: 2, data: b64(Buffer.alloc(PIXELS)) } }), 400, 'invalid_tensor');
    await expectError(await plain({ request_id: 'a b', images: [{ data: png(0) }] }), 400, 'invalid_request');
    await expectError(await plain({ images: Array.from({ length: 65 }, () => ({ data: png(0) })) }), 413, 'batch_too_large');
    await expectError(await fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }), 415, 'unsupported_media_type');
    await expectError(await fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' }), 400, 'invalid_json');
    expect(await storedRows('short')).toBe(0);
  });

  it('reads: unknown id 404, bad paging 400', async () => {
    await expectError(await fetch(`${url}/v1/predictions/nope`), 404, 'prediction_not_found');
    await expectError(await fetch(`${url}/v1/predictions?limit=0`), 400, 'invalid_query');
    await expectError(await fetch(`${url}/v1/predictions?node=${encodeURIComponent("x' OR 1=1")}`), 400, 'invalid_query');
  });

  it('no model loaded yet: 503 with Retry-After (a Broker retries), nothing stored', async () => {
    const res = await plain({ request_id: 'cold-1', images: [{ data: png(0) }] });
    expect(res.status).toBe(200);
    const coldRes = await fetch(`${cold}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: 'cold-2', images: [{ data: png(0) }] }) });
    await expectError(coldRes, 503, 'model_not_ready');
    expect(coldRes.headers.get('retry-after')).toBe('5');
    expect(await storedRows('cold-2')).toBe(0);
  });

  it('with API keys: a header or the edgeflauth attribute (what a Broker forwards), else 401', async () => {
    await expectError(await binary(keyed, 'k-1', { images: [{ data: png(0) }] }), 401, 'unauthorized');
    expect((await binary(keyed, 'k-2', { images: [{ data: png(0) }] }, { 'ce-edgeflauth': 'k'.repeat(32) })).status).toBe(200);
    expect((await binary(keyed, 'k-3', { images: [{ data: png(0) }] }, { 'x-api-key': 'k'.repeat(32) })).status).toBe(200);
    await expectError(await fetch(`${keyed}/v1/predictions`), 401, 'unauthorized');
  });
});

describe('the dashboard’s view (aggregator GET /predictions/recent)', () => {
  it('per node: results, error records and latency, and the newest records, as stored', async () => {
    const app = express();
    app.use(predictionRoutes(db.pool));
    applyErrorHandlers(app, quiet);
    const agg = (await servers.listen(app)).url;
    const res = await fetch(`${agg}/predictions/recent?minutes=60&limit=5`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { nodes: { nodeId: string; results: number; errors: number; meanLatencyMs: number }[]; recent: { node: string; source: string }[] };
    const counts = (await db.pool.query("SELECT count(*) FILTER (WHERE error_code IS NULL) AS ok, count(*) FILTER (WHERE error_code IS NOT NULL) AS bad FROM predictions WHERE node_id = 'node-0'")).rows[0];
    expect(body.nodes).toEqual([expect.objectContaining({ nodeId: 'node-0', results: Number(counts.ok), errors: Number(counts.bad) })]);
    expect(body.nodes[0]!.errors).toBeGreaterThan(0);
    expect(body.nodes[0]!.meanLatencyMs).toBeGreaterThan(0);
    expect(body.recent).toHaveLength(5);
    await expectError(await fetch(`${agg}/predictions/recent?minutes=0`), 400, 'invalid_query');
  });
});

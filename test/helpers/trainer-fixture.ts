import { afterAll, beforeAll, expect } from 'vitest';
import { initBackend } from '../../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { createLogger } from '../../services/shared/log.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../../services/core/model.js';
import * as store from '../../services/store/model-store.js';
import { createTrainerApp } from '../../services/trainer/app.js';
import { loadBuiltinDigits } from '../../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { serverGroup } from './serve.js';

/**
 * The trainer function the trainer suites talk to, in process: one database with the global
 * model as version v1, an open app and one that requires invocation tokens. The `let` bindings
 * are set by the suite's beforeAll (useTrainerFixture); ES module imports see them live.
 */
export const NODE = 'node-0';
export const SECRET = 'trainer-test-secret';
export const SHARD_SIZE = 128;

export let db: TestDatabase;
export let shard: ImageSet;
export let globalFlat: Float32Array;
export let v1: number;
export let base: string; // open app
export let authBase: string; // app with invokeSecret
const servers = serverGroup();
export const logLines: string[] = [];

/** Starts the fixture for one suite; afterwards, checks that no request reached the generic 500 handler. */
export function useTrainerFixture(): void {
  beforeAll(async () => {
    await initBackend('wasm');
    db = await createTestDatabase();
    const all = loadBuiltinDigits();
    // Every 37th digit: a shard with all ten classes in it.
    shard = subset(all, Array.from({ length: SHARD_SIZE }, (_, i) => (i * 37) % all.count));
    const initial = buildModel(1);
    globalFlat = getFlatWeights(initial);
    initial.dispose();
    const bytes = encodeWeights(referenceModelSpec(), globalFlat);
    v1 = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
    const log = createLogger({ service: 'trainer-test' }, 'info', (l) => logLines.push(l));
    base = (await servers.listen(createTrainerApp({ pool: db.pool, nodeId: NODE, shard, model: buildModel(1), log, maxBodyBytes: 8 * 1024 }))).url;
    authBase = (await servers.listen(createTrainerApp({ pool: db.pool, nodeId: NODE, shard, model: buildModel(1), log, invokeSecret: SECRET }))).url;
  });

  afterAll(async () => {
    await servers.closeAll();
    await db?.close();
    // No request in this file may have reached the generic 500 handler.
    expect(logLines.filter((l) => l.includes('unhandled error'))).toEqual([]);
  });
}

export const data = (over: Record<string, unknown> = {}) => ({
  runId: 'run-t',
  round: 1,
  modelVersion: v1,
  epochs: 1,
  batchSize: 32,
  learningRate: 0.001,
  deadline: new Date(Date.now() + 120_000).toISOString(),
  ...over,
});

let eventSeq = 0;
export function binaryHeaders(type = 'dev.edgefl.round.train'): Record<string, string> {
  return {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-type': type,
    'ce-source': '/edgefl/aggregator/test',
    'ce-id': `evt-${++eventSeq}`,
  };
}

export const postBinary = (d: unknown, extra: Record<string, string> = {}, url = base) =>
  fetch(`${url}/`, { method: 'POST', headers: { ...binaryHeaders(), ...extra }, body: JSON.stringify(d) });

export const postStructured = (d: unknown, type = 'dev.edgefl.round.train') =>
  fetch(`${base}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({ specversion: '1.0', type, source: '/edgefl/aggregator/test', id: `evt-${++eventSeq}`, datacontenttype: 'application/json', data: d }),
  });

export const postPlain = (d: unknown, extra: Record<string, string> = {}, url = base) =>
  fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/json', ...extra }, body: JSON.stringify(d) });

export async function updateRows(runId: string, round: number) {
  const r = await db.pool.query('SELECT id, checksum, sample_count, base_version, bytes FROM client_updates WHERE run_id = $1 AND round = $2 AND node_id = $3', [runId, round, NODE]);
  return r.rows as { id: string; checksum: string; sample_count: number; base_version: string; bytes: Buffer }[];
}

export async function expectError(res: Response, status: number, code?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/application\/json/);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.code).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  if (code) expect(body.error.code).toBe(code);
  return body.error;
}

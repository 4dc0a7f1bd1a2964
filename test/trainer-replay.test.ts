import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signInvokeToken, type InvokeClaims } from '../services/shared/auth.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { maxBatchForMemory } from '../services/trainer/train-request.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { quietLog, serve, shards, testData, type Running } from './helpers/federation.js';

/** Replays, base-version conflicts, reply codes, the global model's checksum and the memory-bound batch size. */
const NODE = 'node-0';
const SECRET = 'replay-test-secret-0123';
let db: TestDatabase;
let trainer: Running;
let open: Running;
let v1: number;
let v2: number;

beforeAll(async () => {
  const data = await testData();
  db = await createTestDatabase();
  const flat = getFlatWeights(buildModel(1));
  const publish = (f: Float32Array) => {
    const bytes = encodeWeights(referenceModelSpec(), f);
    return store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
  };
  v1 = await publish(flat);
  v2 = await publish(flat.map((x) => x * 0.9));
  const [shard] = shards(data.train, 1, 48);
  trainer = await serve(createTrainerApp({ pool: db.pool, nodeId: NODE, shard: shard!, model: buildModel(1), log: quietLog, invokeSecret: SECRET, maxBatchSize: maxBatchForMemory(256) }));
  open = await serve(createTrainerApp({ pool: db.pool, nodeId: 'node-9', shard: shard!, model: buildModel(1), log: quietLog }));
});

afterAll(async () => {
  await trainer?.close();
  await open?.close();
  await db?.close();
});

const body = (runId: string, round: number, modelVersion: number, over: Record<string, unknown> = {}) => ({ runId, round, modelVersion, epochs: 1, batchSize: 16, ...over });
const token = (runId: string, round: number, baseVersion: number) => signInvokeToken(SECRET, { node: NODE, runId, round, baseVersion } satisfies InvokeClaims);

/** As the aggregator sends it directly: binary CloudEvent, token in Authorization. */
const direct = (d: ReturnType<typeof body>, auth = token(d.runId, d.round, d.modelVersion)) =>
  fetch(`${trainer.url}/`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${auth}`, 'ce-specversion': '1.0', 'ce-type': 'dev.edgefl.round.train', 'ce-source': '/t', 'ce-id': `e-${Math.random()}` }, body: JSON.stringify(d) });
/** As a Broker delivers it: no Authorization, the token in the edgeflauth attribute, Prefer: reply. */
const viaBroker = (d: ReturnType<typeof body>) =>
  fetch(`${trainer.url}/`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'reply', 'ce-edgeflauth': token(d.runId, d.round, d.modelVersion), 'ce-specversion': '1.0', 'ce-type': 'dev.edgefl.round.train', 'ce-source': '/broker', 'ce-id': `b-${Math.random()}` }, body: JSON.stringify(d) });
const plain = (d: ReturnType<typeof body>) =>
  fetch(`${trainer.url}/`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token(d.runId, d.round, d.modelVersion)}` }, body: JSON.stringify(d) });

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const e = ((await res.json()) as { error: { code: string; message: string } }).error;
  return { status: res.status, ...e };
}
const rows = async (runId: string) => (await db.pool.query('SELECT id, base_version FROM client_updates WHERE run_id = $1', [runId])).rows;

describe('trainer: replays and base versions', () => {
  it('a replay returns the stored update with 200 and created: false; another base version gets 409 base_version_conflict', async () => {
    const first = await plain(body('run-r', 1, v1));
    expect(first.status).toBe(201);
    const created = (await first.json()) as { updateId: number; created: boolean; baseVersion: number };
    expect(created).toMatchObject({ created: true, baseVersion: v1 });

    for (const replay of [plain, direct, viaBroker]) {
      const again = await replay(body('run-r', 1, v1));
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ updateId: created.updateId, created: false, baseVersion: v1 });
    }
    // Same (run, round, node), another base version, with a token valid for exactly that: not a replay.
    const other = await errorOf(await direct(body('run-r', 1, v2)));
    expect(other).toMatchObject({ status: 409, code: 'base_version_conflict' });
    expect(other.message).toContain(`from model version ${v1}, not ${v2}`);
    expect(await rows('run-r')).toHaveLength(1);
  });

  it('a token for one (run, round, base version) does not buy any other', async () => {
    const stolen = token('run-s', 1, v1);
    for (const d of [body('run-s', 2, v1), body('run-s', 1, v2), body('run-other', 1, v1)]) {
      const e = await errorOf(await direct(d, stolen));
      expect(e.status).toBe(401);
      expect(e.message).toMatch(/invocation token wrong (round|base version|run)/);
    }
    expect(await rows('run-s')).toHaveLength(0);
    expect(await rows('run-other')).toHaveLength(0);
  });

  it('answers a broker delivery with 200 and a reply event for a fresh update (never 201)', async () => {
    const res = await viaBroker(body('run-b', 1, v1));
    expect(res.status).toBe(200);
    expect(res.headers.get('ce-type')).toBe('dev.edgefl.update.ready');
    expect(await res.json()).toMatchObject({ created: true, round: 1 });
  });

  it('answers a closed round with 410, which the Eventing contract does not retry', async () => {
    await store.createRun(db.pool, 'run-c', {}, v1);
    await store.openRound(db.pool, { runId: 'run-c', round: 1, config: {}, baseVersion: v1, selected: [NODE], quorum: 1, deadline: new Date(Date.now() + 60_000) });
    await store.failRound(db.pool, 'run-c', 1, { reason: 'test' });
    for (const send of [viaBroker, direct, plain]) expect(await errorOf(await send(body('run-c', 1, v1)))).toMatchObject({ status: 410, code: 'round_closed' });
    expect(await rows('run-c')).toHaveLength(0);
  });
});

describe('trainer: what it trains from', () => {
  it('refuses a global model whose bytes do not match the stored checksum (422), storing nothing', async () => {
    const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(buildModel(2)));
    const v3 = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
    // Change one weight and re-seal the codec's own trailer, as someone with write access to the
    // table could: the bytes decode cleanly, and only the row's checksum tells.
    const tampered = Buffer.from(bytes);
    tampered.writeFloatLE(123.5, 12 + tampered.readUInt32LE(8) + 4 * 10);
    createHash('sha256').update(tampered.subarray(0, tampered.length - 32)).digest().copy(tampered, tampered.length - 32);
    await db.pool.query('UPDATE model_versions SET bytes = $2 WHERE version = $1', [v3, tampered]);
    const e = await errorOf(await direct(body('run-k', 1, v3)));
    expect(e).toMatchObject({ status: 422, code: 'model_checksum_mismatch' });
    expect(await rows('run-k')).toHaveLength(0);
  });

  it('bounds batchSize by its memory limit with a 400 that says why', async () => {
    const limit = maxBatchForMemory(256);
    expect(limit).toBeGreaterThan(1);
    expect(limit).toBeLessThan(4096);
    const e = await errorOf(await direct(body('run-m', 1, v1, { batchSize: limit + 1 })));
    expect(e).toMatchObject({ status: 400, code: 'invalid_field' });
    expect(e.message).toMatch(new RegExp(`'batchSize' must be <= ${limit}.*memory limit`));
    expect((await fetch(`${trainer.url}/`).then((r) => r.json())) as object).toMatchObject({ maxBatchSize: limit, insecure: false });
    expect(await rows('run-m')).toHaveLength(0);
  });

  it('a trainer without a secret reports itself insecure on GET /', async () => {
    expect(await (await fetch(`${open.url}/`)).json()).toMatchObject({ node: 'node-9', insecure: true });
  });
});

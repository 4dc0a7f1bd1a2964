import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createRng, type Rng } from '../datasets/rng.js';
import { createAggregatorApp } from '../aggregator/app.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { publishPromoted } from './helpers/promote.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { createFederation, quietLog, serve, startTrainer, testData, type Running } from './helpers/federation.js';
import { aggregatorCase, servingCase, trainerCase, type Case } from './helpers/fuzz-cases.js';

/**
 * Bounded fuzzing of every HTTP route of the three apps, in-process. The trainer's
 * database has no model, so the rare valid training event ends in 404 (or 409 for a
 * past deadline) instead of training; the aggregator knows no trainers, so a valid
 * POST /runs is a 409. Asserts: no 5xx, the process alive, memory back near baseline.
 */
const CASES = Number(process.env.EDGEFL_FUZZ_CASES ?? 2000);
const CONCURRENCY = 8;

let trainerDb: TestDatabase;
let mainDb: TestDatabase;
let trainer: Running;
let serving: Running;
let aggregator: Running;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

beforeAll(async () => {
  [trainerDb, mainDb] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  const data = await testData();
  trainer = await startTrainer(trainerDb.pool, 'node-0', { ...data.test, count: 20, images: data.test.images.subarray(0, 20 * 784), labels: data.test.labels.subarray(0, 20) });
  const m = buildModel(1);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(m));
  m.dispose();
  await publishPromoted(mainDb.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
  const holder = new ModelHolder(mainDb.pool, quietLog);
  await holder.refresh();
  serving = await serve(createServingApp({ holder, log: quietLog, nodeId: 'node-0', maxBatch: 4, maxBodyBytes: 256 * 1024 }));
  const federation = await createFederation(mainDb.pool, data.test, () => []);
  aggregator = await serve(createAggregatorApp({ pool: mainDb.pool, federation, log: quietLog, adminToken: 'fuzz-admin', trainers: async () => [], servingUrls: () => [] }));
});

afterAll(async () => {
  agent.destroy();
  await Promise.all([trainer, serving, aggregator].filter(Boolean).map((r) => r.close()));
  await Promise.all([trainerDb, mainDb].filter(Boolean).map((d) => d.close()));
});

// ---- transport (the request generators: helpers/fuzz-cases.ts) -----------------------

interface Sent {
  status: number;
  error?: string;
}

function send(base: string, method: string, path: string, headers: Record<string, string>, body?: Buffer | string, truncate = false): Promise<Sent> {
  return new Promise((resolve) => {
    const buf = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
    const h: Record<string, string | number> = { ...headers };
    if (buf) h['content-length'] = truncate ? buf.length + 100 : buf.length;
    const req = http.request(base + path, { method, headers: h, agent: truncate ? false : agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      res.on('error', (e) => resolve({ status: 0, error: e.message }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: truncate ? -1 : 0, error: e.message }));
    if (buf) req.write(buf);
    if (truncate) setTimeout(() => req.destroy(), 20);
    else req.end();
  });
}

async function fuzz(base: () => string, family: string, gen: (rng: Rng) => Case, seed: number, cases = CASES) {
  const rng = createRng(seed);
  const counts = new Map<number, number>();
  const fives: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < cases) {
      next++;
      const c = gen(rng)();
      const r = await send(base(), c.method, c.path, c.headers ?? {}, c.body, c.truncate);
      counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
      if (r.status >= 500) fives.push(`${c.method} ${c.path} ${String(c.body ?? '').slice(0, 120)}`);
      if (r.status === 0) fives.push(`transport error on ${c.method} ${c.path}: ${r.error}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const summary = [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s === -1 ? 'aborted' : s}:${n}`).join(' ');
  console.log(`fuzz ${family}: ${cases} cases; ${summary}`);
  return { fives, counts };
}

// ---- the test ----------------------------------------------------------------------

// Vitest's workers run without --expose-gc; without a collection first, the heap figure
// counts garbage and says nothing about leaks.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;

function memory() {
  collectGarbage();
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, buffers: m.arrayBuffers };
}

describe('fuzzing every route', () => {
  it('no 5xx, alive, memory back near baseline', async () => {
    // warm-up so lazy allocations do not count as growth
    await fuzzOnce(200);
    const before = memory();
    const results = {
      trainer: await fuzz(() => trainer.url, 'trainer', trainerCase, 1),
      serving: await fuzz(() => serving.url, 'serving', servingCase, 2),
      aggregator: await fuzz(() => aggregator.url, 'aggregator', aggregatorCase, 3),
    };
    await new Promise((r) => setTimeout(r, 200));
    const after = memory();
    const mb = (n: number) => (n / MiB).toFixed(1);
    const show = (m: ReturnType<typeof memory>) => `rss ${mb(m.rss)} heap ${mb(m.heap)} buffers ${mb(m.buffers)}`;
    console.log(`fuzz: ${3 * CASES} cases; before ${show(before)} → after ${show(after)} MiB`);
    for (const [family, r] of Object.entries(results)) expect(r.fives, family).toEqual([]);
    // still alive and answering
    for (const base of [trainer.url, serving.url, aggregator.url]) expect((await send(base, 'GET', '/healthz', {})).status).toBe(200);
    // Measured after GC over five runs of 6,000 cases: heap +1.4 to +2.1 MiB, array buffers +0 to +1.2 MiB,
    // RSS +27 to +48 MiB (allocator arenas and V8 pages, not the wasm heap, which stayed at 16 MiB).
    // The bounds leave about twice that: a service retaining 2 KiB of buffers per request (4 MiB over
    // its 2,000), ~1 KiB of objects per request, or ~8 KiB of native memory per request fails the test
    // (a 4 KiB Buffer kept per trainer request was seen to: buffers +7.4 MiB).
    expect(after.heap - before.heap).toBeLessThan(5 * MiB);
    expect(after.buffers - before.buffers).toBeLessThan(4 * MiB);
    // RSS is the coarse guard: on Node 24 (CI's second pass) the same run grew it by +108 MiB with heap and
    // buffers still flat, so its bound follows the allocator of the newer V8; heap and buffers catch the leaks.
    expect(after.rss - before.rss).toBeLessThan((Number(process.versions.node.split('.')[0]) >= 22 ? 192 : 96) * MiB);
  });
});

async function fuzzOnce(n: number) {
  const rng = createRng(42);
  for (let i = 0; i < n; i++) {
    for (const [base, gen] of [[trainer.url, trainerCase], [serving.url, servingCase], [aggregator.url, aggregatorCase]] as const) {
      const c = gen(rng)();
      await send(base, c.method, c.path, c.headers ?? {}, c.body, c.truncate);
    }
  }
}

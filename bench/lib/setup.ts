/**
 * What every local benchmark needs: a PostgreSQL holding a published model (DATABASE_URL
 * when set, else an embedded server in a temporary directory), the request payloads (real
 * digits from the built-in set) and the in-process ceiling (model.predict in this process).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { initBackend, type BackendInfo } from '../../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { buildModel, getFlatWeights, modelSpec, PIXELS } from '../../services/core/model.js';
import { openDatabase, type Database } from '../../services/store/database.js';
import { publishModel } from '../../services/store/model-store.js';
import { promote } from '../../services/store/promotion.js';
import { loadBuiltinDigits } from '../../datasets/builtin-mnist.js';
import { registerCleanup, stopAll } from '../../services/harness/process.js';
import { median, round } from './stats.js';
import { SpecModel } from '../../services/core/forward.js';
import { REFERENCE_CNN } from '../../services/core/model-spec.js';

export interface BenchEnv {
  db: Database;
  databaseUrl: string;
  dataDir: string;
  modelVersion: number;
  backend: BackendInfo;
  /** The published weights, for the in-process model. */
  flat: Float32Array;
  close(): Promise<void>;
}

/** Opens the database (starting embedded PostgreSQL if needed) and publishes a random-init model. */
export async function openBenchEnv(opts: { databaseUrl?: string; log?: (m: string) => void } = {}): Promise<BenchEnv> {
  const log = opts.log ?? (() => {});
  const backend = await initBackend(undefined, log);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-bench-'));
  // As root the embedded server runs as the postgres user, who must be able to enter this directory.
  chmodSync(dataDir, 0o755);
  const databaseUrl = opts.databaseUrl ?? process.env.DATABASE_URL;
  let db: Database;
  try {
    if (!databaseUrl) log('starting embedded PostgreSQL for the benchmark');
    db = await openDatabase({ databaseUrl, dataDir, log, stopEmbeddedOnClose: true });
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  try {
    const model = buildModel(7);
    const flat = getFlatWeights(model);
    const spec = modelSpec(model);
    const bytes = encodeWeights(spec, flat);
    model.dispose();
    const modelVersion = await publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: spec }, metrics: { source: 'bench', init: 'random' } });
    await promote(db.pool, { version: modelVersion, by: 'bench', reason: 'bench model' }); // serving loads only promoted versions
    log(`published and promoted model v${modelVersion} (random init, ${bytes.length} bytes)`);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      unregister();
      await db.close().catch(() => {});
      rmSync(dataDir, { recursive: true, force: true });
    };
    // Also run on Ctrl-C / SIGTERM of the bench process (stopAll), so no PostgreSQL is left behind.
    const unregister = registerCleanup(close);
    return { db, databaseUrl: db.url, dataDir, modelVersion, backend, flat, close };
  } catch (e) {
    await db.close().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Runs `fn` with a bench environment. Afterwards every child still running is stopped
 * first and the database closed last (a service whose database vanishes logs errors).
 */
export async function withBenchEnv<T>(ctx: { log(msg: string): void }, fn: (env: BenchEnv) => Promise<T>): Promise<T> {
  const env = await openBenchEnv({ log: ctx.log });
  try {
    return await fn(env);
  } finally {
    await stopAll(); // the children, then the registered clean-ups (env.close among them)
  }
}

// ---- payloads ----------------------------------------------------------------

let digits: Float32Array | undefined;
let digitCount = 0;

/** n real digits (cycling through the 10k built-in ones) as normalised pixels. */
export function digitPixels(n: number): Float32Array {
  if (!digits) {
    const set = loadBuiltinDigits();
    digits = set.images;
    digitCount = set.count;
  }
  const out = new Float32Array(n * PIXELS);
  for (let i = 0; i < n; i++) {
    const src = i % digitCount;
    out.set(digits.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
  }
  return out;
}

/** POST body for /v1/models/mnist:predict with n images ({"instances":[[784 floats], ...]}), 3 decimals per pixel. */
export function predictBody(n: number): string {
  const px = digitPixels(n);
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const vals: string[] = [];
    for (let j = 0; j < PIXELS; j++) {
      const v = px[i * PIXELS + j]!;
      vals.push(v === 0 ? '0' : String(Math.round(v * 1000) / 1000));
    }
    rows.push(`[${vals.join(',')}]`);
  }
  return `{"instances":[${rows.join(',')}]}`;
}

export const PREDICT_PATH = '/v1/models/mnist:predict';
export const V2_INFER_PATH = '/v2/models/mnist/infer';

/** The same n digits as an Open Inference Protocol request with the binary tensor data extension: a JSON header, then n·784 UINT8 pixels. */
export function binaryInferRequest(n: number): { body: Buffer; headerLength: number } {
  const px = digitPixels(n);
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'images', shape: [n, PIXELS], datatype: 'UINT8', parameters: { binary_data_size: n * PIXELS } }], outputs: [{ name: 'class' }] }));
  return { body: Buffer.concat([header, Uint8Array.from(px, (v) => Math.round(v * 255))]), headerLength: header.length };
}

/**
 * Kept-alive connections for the timed requests. Node's fetch (undici) spent 0.3–0.4 ms more of
 * the client's time per request than node:http on the same local round trip: that is the
 * benchmark's own cost, not the server's, and at batch 100 it was 0.3–0.4 ms of the ~3 ms that
 * separated a served request from the in-process ceiling.
 */
const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

/** One POST, timed until the whole response body has arrived. */
function timedPost(url: string, headers: Record<string, string>, body: Uint8Array | string, timeoutMs: number): Promise<{ ms: number; status: number; text: string }> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = client.request(target, { method: 'POST', agent: agents[target.protocol as 'http:' | 'https:'], headers: { ...headers, 'content-length': String(bytes.length) }, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ ms: performance.now() - start, status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(bytes);
  });
}

/** One timed binary inference request (until the whole response body has arrived). */
export async function timedBinaryInfer(baseUrl: string, req: { body: Buffer; headerLength: number }, timeoutMs = 120_000): Promise<{ ms: number; count: number }> {
  const { ms, status, text } = await timedPost(baseUrl + V2_INFER_PATH, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(req.headerLength) }, req.body, timeoutMs);
  if (status < 200 || status >= 300) throw new Error(`binary infer answered ${status}: ${text.slice(0, 300)}`);
  return { ms, count: (JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0]!.data.length };
}

/** One timed predict request (until the whole response body has arrived). */
export async function timedPredict(baseUrl: string, body: string, timeoutMs = 120_000): Promise<{ ms: number; status: number; count: number }> {
  const { ms, status, text } = await timedPost(baseUrl + PREDICT_PATH, { 'content-type': 'application/json' }, body, timeoutMs);
  if (status < 200 || status >= 300) throw new Error(`predict answered ${status}: ${text.slice(0, 300)}`);
  const classes = /"classes":\[([^\]]*)\]/.exec(text)?.[1];
  return { ms, status, count: classes ? classes.split(',').length : 0 };
}

// ---- in-process ceiling ---------------------------------------------------------

export interface CeilingRow {
  batch: number;
  ms_median: number;
  images_per_s: number;
  /** Predict calls per second at this batch size (for batch 1: the request-rate ceiling). */
  calls_per_s: number;
  reps: number;
}

/**
 * model.predict throughput in this process (no HTTP, no JSON): the ceiling a served
 * request can at best reach. Each size is timed for about `budgetMs` (at least 3 calls).
 */
export function measureCeiling(flat: Float32Array, sizes: readonly number[], budgetMs = 1000): CeilingRow[] {
  // The predict path serving runs (the spec's forward pass on core ops), so served ÷ in-process measures HTTP and batching only.
  const model = new SpecModel(REFERENCE_CNN, flat);
  try {
    model.predict(digitPixels(1), 1); // compile kernels once
    return sizes.map((batch) => {
      const px = digitPixels(batch);
      model.predict(px, batch); // warm-up for this shape
      const times: number[] = [];
      const until = performance.now() + budgetMs;
      while (times.length < 3 || (performance.now() < until && times.length < 2000)) {
        const t = performance.now();
        model.predict(px, batch);
        times.push(performance.now() - t);
      }
      const ms = median(times);
      return { batch, ms_median: round(ms, 3), images_per_s: round((batch * 1000) / ms, 1), calls_per_s: round(1000 / ms, 1), reps: times.length };
    });
  } finally {
    model.dispose();
  }
}

export function ceilingFor(rows: readonly CeilingRow[], batch: number): CeilingRow | undefined {
  return rows.find((r) => r.batch === batch);
}

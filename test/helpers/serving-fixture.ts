import { afterAll, beforeAll, expect, vi } from 'vitest';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { initBackend } from '../../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { createLogger } from '../../services/shared/log.js';
import { PIXELS, argmaxRows, buildModel, getFlatWeights, predictProbabilities, referenceModelSpec } from '../../services/core/model.js';
import { trainLocal } from '../../services/core/train.js';
import { createServingApp } from '../../services/serving/app.js';
import { ModelHolder } from '../../services/serving/model-holder.js';
import { listenForPromotions } from '../../services/store/listen.js';
import { builtinMnistSplit } from '../../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { publishPromoted } from './promote.js';
import { serverGroup } from './serve.js';

/**
 * The in-process serving function the serving suites talk to: one database, a ModelHolder
 * wired to promotions as services/serving/main.ts wires it, and two apps on loopback. The
 * `let` bindings are set by the suite's beforeAll (useServingFixture); ES module imports see
 * them as they are at the time a test reads them.
 */
export const EVAL = 500;
export const MAX_BATCH = 4; // the limits app
export const MAX_BODY = 64 * 1024; // the limits app

export let db: TestDatabase;
export let holder: ModelHolder;
let listener: { close(): Promise<void> };
export let base: string; // generous limits: the accuracy checks send 500 digits at once
export let small: string; // tight limits: maxBatch 4, 64 KiB bodies
const servers = serverGroup();
export const logLines: string[] = [];
export const log = createLogger({ service: 'serving-test' }, 'info', (l) => logLines.push(l));

export let trainedFlat: Float32Array;
const split = builtinMnistSplit();
// A fixed, seeded slice of the held-out split: digits the model never saw.
export const heldOut: ImageSet = subset(split.test, Array.from({ length: EVAL }, (_, i) => 500 + i));
// Rounded to 3 decimals, as sent over JSON.
export const pixels = heldOut.images.map((v) => Math.round(v * 1000) / 1000);
export let expected: number[]; // in-process predictions of the trained model on `pixels`

// As services/http/runtime.ts sets it: idle keep-alive sockets outlive the client's.
export const listenOn = async (app: ReturnType<typeof createServingApp>) => (await servers.listen(app, { keepAliveTimeout: 65_000 })).url;

export function weightsRow(flat: Float32Array) {
  const bytes = encodeWeights(referenceModelSpec(), flat);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
}

/**
 * Starts the fixture for one suite. `trained`: train the model under test (sets trainedFlat
 * and expected); suites that only check how input is refused skip that and serve the seeded
 * initial weights. `promoted`: promote those weights and wait until they are served.
 */
export function useServingFixture(opts: { trained: boolean; promoted: boolean }): void {
  beforeAll(async () => {
    await initBackend('wasm');
    db = await createTestDatabase();
    holder = new ModelHolder(db.pool, log);
    // Wired exactly as services/serving/main.ts does.
    listener = listenForPromotions(
      db.url,
      () => void holder.onPromotion().catch((e) => log.warn('reload failed', { err: e })),
      () => void holder.refresh().catch((e) => log.warn('refresh failed', { err: e })),
      (m) => log.warn(m),
    );
    base = await listenOn(createServingApp({ holder, log, nodeId: 'node-0', maxBatch: 1024, maxBodyBytes: 16 * 1024 * 1024 }));
    small = await listenOn(createServingApp({ holder, log, nodeId: 'node-0', maxBatch: MAX_BATCH, maxBodyBytes: MAX_BODY }));

    const model = buildModel(1);
    if (opts.trained) {
      // The model under test is trained here, on digits disjoint from the held-out ones.
      const train = subset(split.train, Array.from({ length: 2400 }, (_, i) => i));
      await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.002, seed: 1 });
      await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.0005, seed: 2 });
      trainedFlat = getFlatWeights(model);
      expected = argmaxRows(predictProbabilities(model, pixels, EVAL));
    }
    if (opts.promoted) {
      const version = await publishPromoted(db.pool, weightsRow(getFlatWeights(model)));
      await vi.waitFor(() => expect(holder.current?.version, 'the promoted version to load').toBe(version), { timeout: 15_000, interval: 20 });
    }
    model.dispose();
  }, 120_000);

  afterAll(async () => {
    await listener?.close();
    await servers.closeAll();
    await db?.close();
  });
}

export const post = (url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(url, { method: 'POST', headers, body: typeof body === 'string' || body instanceof Uint8Array || body instanceof FormData ? (body as BodyInit) : JSON.stringify(body) });

export const flatImage = (i: number) => Array.from(pixels.subarray(i * PIXELS, (i + 1) * PIXELS));
export const image28 = (i: number) => Array.from({ length: 28 }, (_, r) => flatImage(i).slice(r * 28, r * 28 + 28));
export const image28x1 = (i: number) => image28(i).map((row) => row.map((v) => [v]));
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** TF Serving's error shape: {"error": "<message>"}, with edgefl's machine-readable code beside it. */
export async function expectV1Error(res: Response, status: number, code?: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: string; code: string };
  expect(typeof body.code).toBe('string');
  expect(typeof body.error).toBe('string');
  expect(body.error.length).toBeGreaterThan(0);
  if (code) expect(body.code).toBe(code);
}

export async function expectV2Error(res: Response, status: number) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: unknown };
  expect(typeof body.error).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
}

/** 8-bit RGBA rendering of held-out digit i, optionally dark-on-light, scaled by an integer factor. */
function rgba(i: number, invert: boolean, scale: number): { data: Buffer; width: number; height: number } {
  const side = 28 * scale;
  const data = Buffer.alloc(side * side * 4);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const v = heldOut.images[i * PIXELS + Math.floor(y / scale) * 28 + Math.floor(x / scale)]!;
      const g = Math.round(255 * (invert ? 1 - v : v));
      data.set([g, g, g, 255], (y * side + x) * 4);
    }
  }
  return { data, width: side, height: side };
}

export function toPng(i: number, invert = false, scale = 1): Buffer {
  const img = rgba(i, invert, scale);
  const png = new PNG({ width: img.width, height: img.height });
  img.data.copy(png.data);
  return PNG.sync.write(png);
}

const jpegCache = new Map<string, Buffer>();
/** jpeg-js builds its tables anew for every encode (~0.3-0.6 s here), so each rendering is made once. */
export function toJpeg(i: number, invert = false, scale = 2): Buffer {
  const key = `${i}/${invert}/${scale}`;
  let out = jpegCache.get(key);
  if (!out) jpegCache.set(key, (out = Buffer.from(jpeg.encode(rgba(i, invert, scale), 95).data)));
  return out;
}

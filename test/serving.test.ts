import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import autocannon from 'autocannon';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { initBackend } from '../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { createLogger } from '../services/shared/log.js';
import { PIXELS, argmaxRows, buildModel, getFlatWeights, predictProbabilities, referenceModelSpec } from '../services/core/model.js';
import { trainLocal } from '../services/core/train.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { listenForPromotions } from '../services/store/listen.js';
import { publishPromoted } from './helpers/promote.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { serverGroup } from './helpers/serve.js';

const EVAL = 500;
const MAX_BATCH = 4; // the limits app
const MAX_BODY = 64 * 1024; // the limits app

let db: TestDatabase;
let holder: ModelHolder;
let listener: { close(): Promise<void> };
let base: string; // generous limits: the accuracy checks send 500 digits at once
let small: string; // tight limits: maxBatch 4, 64 KiB bodies
const servers = serverGroup();
const logLines: string[] = [];
const log = createLogger({ service: 'serving-test' }, 'info', (l) => logLines.push(l));

let trainedFlat: Float32Array;
const split = builtinMnistSplit();
// A fixed, seeded slice of the held-out split: digits the model never saw.
const heldOut: ImageSet = subset(split.test, Array.from({ length: EVAL }, (_, i) => 500 + i));
// Rounded to 3 decimals, as sent over JSON.
const pixels = heldOut.images.map((v) => Math.round(v * 1000) / 1000);
let expected: number[]; // in-process predictions of the trained model on `pixels`
let v1: number;

// As services/http/runtime.ts sets it: idle keep-alive sockets outlive the client's.
const listenOn = async (app: ReturnType<typeof createServingApp>) => (await servers.listen(app, { keepAliveTimeout: 65_000 })).url;

function weightsRow(flat: Float32Array) {
  const bytes = encodeWeights(referenceModelSpec(), flat);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
}

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

  // The model under test is trained here, on digits disjoint from the held-out ones.
  const train = subset(split.train, Array.from({ length: 2400 }, (_, i) => i));
  const model = buildModel(1);
  await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.002, seed: 1 });
  await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.0005, seed: 2 });
  trainedFlat = getFlatWeights(model);
  expected = argmaxRows(predictProbabilities(model, pixels, EVAL));
  model.dispose();
}, 120_000);

afterAll(async () => {
  await listener?.close();
  await servers.closeAll();
  await db?.close();
});

const post = (url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(url, { method: 'POST', headers, body: typeof body === 'string' || body instanceof Uint8Array || body instanceof FormData ? (body as BodyInit) : JSON.stringify(body) });

const flatImage = (i: number) => Array.from(pixels.subarray(i * PIXELS, (i + 1) * PIXELS));
const image28 = (i: number) => Array.from({ length: 28 }, (_, r) => flatImage(i).slice(r * 28, r * 28 + 28));
const image28x1 = (i: number) => image28(i).map((row) => row.map((v) => [v]));
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function accuracy(classes: number[]): number {
  return classes.filter((c, i) => c === heldOut.labels[i]).length / classes.length;
}

/** TF Serving's error shape: {"error": "<message>"}, with edgefl's machine-readable code beside it. */
async function expectV1Error(res: Response, status: number, code?: string) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: string; code: string };
  expect(typeof body.code).toBe('string');
  expect(typeof body.error).toBe('string');
  expect(body.error.length).toBeGreaterThan(0);
  if (code) expect(body.code).toBe(code);
}

async function expectV2Error(res: Response, status: number) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: unknown };
  expect(typeof body.error).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
}

function expectVersion(res: Response, body: { model_version?: unknown }, version: number) {
  expect(res.headers.get('x-model-version')).toBe(String(version));
  expect(body.model_version).toBe(String(version));
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

function toPng(i: number, invert = false, scale = 1): Buffer {
  const img = rgba(i, invert, scale);
  const png = new PNG({ width: img.width, height: img.height });
  img.data.copy(png.data);
  return PNG.sync.write(png);
}

const jpegCache = new Map<string, Buffer>();
/** jpeg-js builds its tables anew for every encode (~0.3-0.6 s here), so each rendering is made once. */
function toJpeg(i: number, invert = false, scale = 2): Buffer {
  const key = `${i}/${invert}/${scale}`;
  let out = jpegCache.get(key);
  if (!out) jpegCache.set(key, (out = Buffer.from(jpeg.encode(rgba(i, invert, scale), 95).data)));
  return out;
}

describe('serving before any model is promoted', () => {
  it('is live but not ready, and prediction routes answer 503 in each protocol’s error shape', async () => {
    expect((await fetch(`${base}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(503);
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect(await (await fetch(`${base}/v2/models/mnist/ready`)).json()).toEqual({ name: 'mnist', ready: false });
    const predict = await post(`${base}/v1/models/mnist:predict`, { instances: [flatImage(0)] });
    expect(predict.headers.get('retry-after')).toBe('5');
    await expectV1Error(predict, 503, 'model_not_ready');
    await expectV1Error(await fetch(`${base}/v1/models/mnist`), 503, 'model_not_ready');
    await expectV1Error(await post(`${base}/v1/models/mnist:classify`, toPng(0), { 'content-type': 'image/png' }), 503, 'model_not_ready');
    await expectV2Error(await post(`${base}/v2/models/mnist/infer`, { inputs: [{ name: 'images', shape: [1, 784], datatype: 'FP32', data: flatImage(0) }] }), 503);
    await expectV2Error(await fetch(`${base}/v2/models/mnist`), 503);
  });

  it('loads the first version promoted, through NOTIFY', async () => {
    v1 = await publishPromoted(db.pool, { ...weightsRow(trainedFlat), metrics: { accuracy: 0.96 } });
    await vi.waitFor(() => expect(holder.current?.version, 'version 1 to load').toBe(v1), { timeout: 15_000, interval: 20 });
    const ready = await fetch(`${base}/v2/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, model_version: String(v1), canary: false });
    expect(await (await fetch(`${base}/v2/models/mnist/ready`)).json()).toEqual({ name: 'mnist', ready: true });
  });
});

describe('prediction routes', () => {
  it('the model is good enough to test with (in process)', () => {
    expect(accuracy(expected)).toBeGreaterThanOrEqual(0.95);
  });

  it('TF Serving: instances as flat 784-vectors', async () => {
    const res = await post(`${base}/v1/models/mnist:predict`, { instances: range(EVAL).map(flatImage) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { predictions: number[][]; classes: number[]; model_name: string; model_version: string };
    expectVersion(res, body, v1);
    expect(body.model_name).toBe('mnist');
    expect(body.predictions).toHaveLength(EVAL);
    for (const p of body.predictions.slice(0, 20)) {
      expect(p).toHaveLength(10);
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 3);
    }
    expect(argmaxRows(Float32Array.from(body.predictions.flat()))).toEqual(body.classes);
    expect(body.classes).toEqual(expected);
    expect(accuracy(body.classes)).toBeGreaterThanOrEqual(0.95);
  });

  it('TF Serving: inputs as 28x28 and instances as 28x28x1', async () => {
    const res = await post(`${base}/v1/models/mnist:predict`, { inputs: range(EVAL).map(image28) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { classes: number[]; model_version: string };
    expectVersion(res, body, v1);
    expect(body.classes).toEqual(expected);
    expect(accuracy(body.classes)).toBeGreaterThanOrEqual(0.95);
    const res2 = await post(`${base}/v1/models/mnist:predict`, { instances: range(50).map(image28x1) });
    expect(((await res2.json()) as { classes: number[] }).classes).toEqual(expected.slice(0, 50));
  });

  it('KServe V2: [N,784] flat data and [N,28,28,1] nested data', async () => {
    const flat = await post(`${base}/v2/models/mnist/infer`, { id: 'req-1', inputs: [{ name: 'images', shape: [EVAL, 784], datatype: 'FP32', data: Array.from(pixels) }] });
    expect(flat.status).toBe(200);
    const body = (await flat.json()) as { id: string; model_name: string; model_version: string; outputs: { name: string; shape: number[]; datatype: string; data: number[] }[] };
    expectVersion(flat, body, v1);
    expect(body.id).toBe('req-1');
    expect(body.model_name).toBe('mnist');
    const probs = body.outputs.find((o) => o.name === 'probabilities')!;
    const cls = body.outputs.find((o) => o.name === 'class')!;
    expect(probs).toMatchObject({ shape: [EVAL, 10], datatype: 'FP32' });
    expect(probs.data).toHaveLength(EVAL * 10);
    expect(cls).toMatchObject({ shape: [EVAL], datatype: 'INT64' });
    expect(cls.data).toEqual(expected);
    expect(accuracy(cls.data)).toBeGreaterThanOrEqual(0.95);

    // One array per pixel costs JSON.parse ~1 µs each: nested 28x28x1 data is bounded by the array limit (128k), not the batch limit.
    const NESTED = 150;
    const nested = await post(`${base}/v2/models/mnist/infer`, { inputs: [{ name: 'images', shape: [NESTED, 28, 28, 1], datatype: 'FP32', data: range(NESTED).map(image28x1) }] });
    expect(nested.status).toBe(200);
    const nb = (await nested.json()) as { model_version: string; outputs: { name: string; data: number[] }[] };
    expectVersion(nested, nb, v1);
    const classes = nb.outputs.find((o) => o.name === 'class')!.data;
    expect(classes).toEqual(expected.slice(0, NESTED));
    const tooNested = await post(`${base}/v2/models/mnist/infer`, { inputs: [{ name: 'images', shape: [EVAL, 28, 28, 1], datatype: 'FP32', data: range(EVAL).map(image28x1) }] });
    expect(tooNested.status).toBe(413);
    expect(((await tooNested.json()) as { error: string }).error).toMatch(/arrays.*send each image flat/);

    const threeD = await post(`${base}/v2/models/mnist/infer`, { inputs: [{ name: 'images', shape: [3, 28, 28], datatype: 'FP32', data: range(3).map(image28) }] });
    expect(((await threeD.json()) as { outputs: { name: string; data: number[] }[] }).outputs[1]!.data).toEqual(expected.slice(0, 3));
  });

  it('model status and metadata name the version', async () => {
    const status = (await (await fetch(`${base}/v1/models/mnist`)).json()) as { model_version_status: { version: string; state: string }[] };
    expect(status.model_version_status).toEqual([{ version: String(v1), state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }]);
    const meta = (await (await fetch(`${base}/v1/models/mnist/metadata`)).json()) as Record<string, any>;
    expect(meta.model_spec).toEqual({ name: 'mnist', version: String(v1), signature_name: 'serving_default' });
    expect(meta.edgefl.checksum).toBe(weightsRow(trainedFlat).checksum);
    expect(meta.edgefl.metrics).toEqual({ accuracy: 0.96 });
    const v2meta = (await (await fetch(`${base}/v2/models/mnist`)).json()) as Record<string, any>;
    expect(v2meta).toMatchObject({ name: 'mnist', versions: [String(v1)] });
  });
});

describe('image upload', () => {
  const N = 24;
  // Classes the model gives the same digits as tensors; the images go through decode,
  // grayscale, (auto-)invert, crop, scale and centring, so allow a few to differ.
  const MIN_AGREEMENT = 0.8;

  async function classify(files: { name: string; bytes: Buffer; type: string }[], query = '') {
    const form = new FormData();
    for (const f of files) form.append('images', new Blob([new Uint8Array(f.bytes)], { type: f.type }), f.name);
    const res = await fetch(`${base}/v1/models/mnist:classify${query}`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model_version: string; results: { file: string; class: number; probabilities: number[]; top3: { class: number }[] }[] };
    expectVersion(res, body, v1);
    expect(body.results.map((r) => r.file)).toEqual(files.map((f) => f.name));
    for (const r of body.results) {
      expect(r.probabilities).toHaveLength(10);
      expect(r.top3[0]!.class).toBe(r.class);
    }
    return body.results.map((r) => r.class);
  }

  const agreement = (classes: number[]) => classes.filter((c, i) => c === heldOut.labels[i]).length / classes.length;

  it('classifies several PNG and JPEG files per request, white-on-black and dark-on-light (auto-invert)', async () => {
    const J = 4; // JPEG encoding is slow in jpeg-js: fewer of them
    const sets = {
      png: range(N).map((i) => ({ name: `d${i}.png`, bytes: toPng(i), type: 'image/png' })),
      pngInverted: range(N).map((i) => ({ name: `d${i}-inv.png`, bytes: toPng(i, true, 2), type: 'image/png' })),
      jpeg: range(J).map((i) => ({ name: `d${i}.jpg`, bytes: toJpeg(i), type: 'image/jpeg' })),
      jpegInverted: range(J).map((i) => ({ name: `d${i}-inv.jpg`, bytes: toJpeg(i, true, 3), type: 'image/jpeg' })),
    };
    const results: Record<string, number[]> = {};
    for (const [name, files] of Object.entries(sets)) results[name] = await classify(files);
    expect(agreement(results.png!)).toBeGreaterThanOrEqual(MIN_AGREEMENT);
    expect(agreement(results.pngInverted!)).toBeGreaterThanOrEqual(MIN_AGREEMENT);
    const jpegs = [...results.jpeg!, ...results.jpegInverted!];
    expect(jpegs.filter((c, i) => c === heldOut.labels[i % J]).length).toBeGreaterThanOrEqual(6);
    // JPEG (lossy) and PNG renderings of the same digits mostly get the same class.
    expect(jpegs.filter((c, i) => c === results.png![i % J]).length).toBeGreaterThanOrEqual(6);
    // Inverting a dark-on-light image gives (nearly) what the white-on-black one gets.
    const same = results.png!.filter((c, i) => c === results.pngInverted![i]).length;
    expect(same).toBeGreaterThanOrEqual(N - 2);
  });

  it('invert=true on a white-on-black image gets it wrong way round; invert=false keeps it', async () => {
    const files = range(N).map((i) => ({ name: `d${i}.png`, bytes: toPng(i), type: 'image/png' }));
    // preprocess=resize on a 28x28 white-on-black PNG is the digit itself (to 8 bits): the tensor route's answer.
    const exact = await classify(files, '?invert=false&preprocess=resize');
    expect(exact.filter((c, i) => c === expected[i]).length).toBeGreaterThanOrEqual(N - 1);
    const wrong = await classify(files, '?invert=true&preprocess=resize');
    expect(agreement(wrong)).toBeLessThan(0.5);
  });

  it('accepts a raw image body (image/png, image/jpeg, application/octet-stream)', async () => {
    const cases: [Buffer, string][] = [
      [toPng(0), 'image/png'],
      [toJpeg(1, true, 3), 'image/jpeg'],
      [toPng(2, true, 3), 'application/octet-stream'],
    ];
    const classes: number[] = [];
    for (const [bytes, type] of cases) {
      const res = await post(`${base}/v1/models/mnist:classify`, bytes, { 'content-type': type });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { model_version: string; results: { file: string; class: number }[] };
      expectVersion(res, body, v1);
      expect(body.results).toHaveLength(1);
      expect(body.results[0]!.file).toBe('body');
      classes.push(body.results[0]!.class);
    }
    expect(classes.filter((c, i) => c === heldOut.labels[i]).length).toBeGreaterThanOrEqual(2);
  });
});

describe('bad input is a 4xx, never a 5xx', () => {
  const pred = (body: unknown, url = small) => post(`${url}/v1/models/mnist:predict`, body);
  const infer = (input: unknown, url = small) => post(`${url}/v2/models/mnist/infer`, { inputs: [input] });
  const img = flatImage(0);
  const bad28 = (v: unknown) => image28(0).map((row, r) => (r === 5 ? row.map((x, c) => (c === 7 ? v : x)) : row));

  const v1Cases: [string, () => Promise<Response>, number, string][] = [
    ['unknown model (predict)', () => post(`${small}/v1/models/resnet:predict`, { instances: [img] }), 404, 'model_not_found'],
    ['unknown model (status)', () => fetch(`${small}/v1/models/resnet`), 404, 'model_not_found'],
    ['unknown model (metadata)', () => fetch(`${small}/v1/models/resnet/metadata`), 404, 'model_not_found'],
    ['unknown model (classify)', () => post(`${small}/v1/models/resnet:classify`, toPng(0), { 'content-type': 'image/png' }), 404, 'model_not_found'],
    ['no instances or inputs', () => pred({ images: [img] }), 400, 'missing_field'],
    ['a JSON array body', () => pred([img]), 400, 'invalid_body'],
    ['instances not a list', () => pred({ instances: 'digits' }), 400, 'invalid_shape'],
    ['empty instances', () => pred({ instances: [] }), 400, 'invalid_shape'],
    ['an image of 100 values', () => pred({ instances: [img.slice(0, 100)] }), 400, 'invalid_shape'],
    ['an image of 785 values', () => pred({ instances: [[...img, 0]] }), 400, 'invalid_shape'],
    ['28 rows of 27', () => pred({ inputs: [image28(0).map((r) => r.slice(1))] }), 400, 'invalid_shape'],
    ['two channels', () => pred({ inputs: [image28(0).map((r) => r.map((v) => [v, v]))] }), 400, 'invalid_shape'],
    ['a scalar image', () => pred({ instances: [0.5] }), 400, 'invalid_shape'],
    ['a [1,28,28,1] image', () => pred({ instances: [[image28x1(0)]] }), 400, 'invalid_shape'],
    ['string pixels', () => pred({ instances: [img.map(String)] }), 400, 'invalid_dtype'],
    ['a null pixel', () => pred({ inputs: [bad28(null)] }), 400, 'invalid_dtype'],
    ['a boolean pixel', () => pred({ instances: [img.map((v, i) => (i === 3 ? true : v))] }), 400, 'invalid_dtype'],
    ["'NaN' as a pixel", () => pred({ instances: [img.map((v, i) => (i === 9 ? 'NaN' : v))] }), 400, 'invalid_dtype'],
    ['an infinite pixel (1e999)', () => post(`${small}/v1/models/mnist:predict`, `{"instances":[[${img.map((v, i) => (i === 9 ? '1e999' : String(v))).join(',')}]]}`), 400, 'non_finite'],
    ['0..255 pixels', () => pred({ instances: [img.map((v) => v * 255)] }), 400, 'out_of_range'],
    ['a pixel of 1.5', () => pred({ inputs: [bad28(1.5)] }), 400, 'out_of_range'],
    ['a negative pixel', () => pred({ instances: [img.map((v, i) => (i === 0 ? -0.1 : v))] }), 400, 'out_of_range'],
    ['a batch over maxBatch', () => pred({ instances: range(MAX_BATCH + 1).map(() => img) }), 413, 'batch_too_large'],
    ['a body over maxBodyBytes', () => pred({ instances: [img], pad: 'x'.repeat(MAX_BODY) }), 413, 'body_too_large'],
    ['JSON that does not parse', () => post(`${small}/v1/models/mnist:predict`, '{"instances": [[0.1, 0.2'), 400, 'invalid_json'],
    ['text/plain', () => post(`${small}/v1/models/mnist:predict`, JSON.stringify({ instances: [img] }), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['no body at all', () => fetch(`${small}/v1/models/mnist:predict`, { method: 'POST' }), 400, 'invalid_body'],
  ];
  for (const [name, send, status, code] of v1Cases) {
    it(`v1 predict/status: ${name} → ${status} ${code}`, async () => {
      await expectV1Error(await send(), status, code);
    });
  }

  const good = { name: 'images', shape: [1, 784], datatype: 'FP32', data: img };
  const v2Cases: [string, () => Promise<Response>, number][] = [
    ['unknown model (infer)', () => post(`${small}/v2/models/resnet/infer`, { inputs: [good] }), 404],
    ['unknown model (metadata)', () => fetch(`${small}/v2/models/resnet`), 404],
    ['unknown model (ready)', () => fetch(`${small}/v2/models/resnet/ready`), 404],
    ['no inputs', () => post(`${small}/v2/models/mnist/infer`, { outputs: [] }), 400],
    ['two inputs', () => post(`${small}/v2/models/mnist/infer`, { inputs: [good, good] }), 400],
    ['an input that is not an object', () => infer('images'), 400],
    ['datatype INT32', () => infer({ ...good, datatype: 'INT32' }), 400],
    ['datatype BYTES with strings', () => infer({ ...good, datatype: 'BYTES', data: img.map(String) }), 400],
    ['no datatype', () => infer({ ...good, datatype: undefined }), 400],
    ['shape [1,783]', () => infer({ ...good, shape: [1, 783] }), 400],
    ['shape [1,28,27]', () => infer({ ...good, shape: [1, 28, 27] }), 400],
    ['shape [1,28,28,3]', () => infer({ ...good, shape: [1, 28, 28, 3] }), 400],
    ['shape [-1,784]', () => infer({ ...good, shape: [-1, 784] }), 400],
    ['shape as a string', () => infer({ ...good, shape: '1,784' }), 400],
    ['data shorter than the shape', () => infer({ ...good, shape: [2, 784] }), 400],
    ['data not a list', () => infer({ ...good, data: 'pixels' }), 400],
    ['string data', () => infer({ ...good, data: img.map(String) }), 400],
    ['a null in the data', () => infer({ ...good, data: img.map((v, i) => (i === 2 ? null : v)) }), 400],
    ["'NaN' in the data", () => infer({ ...good, data: img.map((v, i) => (i === 2 ? 'NaN' : v)) }), 400],
    ['a value above 1', () => infer({ ...good, data: img.map((v, i) => (i === 2 ? 7 : v)) }), 400],
    ['a batch over maxBatch', () => infer({ ...good, shape: [MAX_BATCH + 1, 784] }), 413],
    ['a body over maxBodyBytes', () => post(`${small}/v2/models/mnist/infer`, { inputs: [good], pad: 'x'.repeat(MAX_BODY) }), 413],
    ['JSON that does not parse', () => post(`${small}/v2/models/mnist/infer`, '{"inputs": ['), 400],
    ['text/plain', () => post(`${small}/v2/models/mnist/infer`, JSON.stringify({ inputs: [good] }), { 'content-type': 'text/plain' }), 415],
  ];
  for (const [name, send, status] of v2Cases) {
    it(`v2 infer: ${name} → ${status} {"error": "..."}`, async () => {
      await expectV2Error(await send(), status);
    });
  }

  const hugePng = () => {
    const png = Buffer.from(toPng(0));
    png.writeUInt32BE(100_000, 16); // IHDR width
    png.writeUInt32BE(100_000, 20); // IHDR height
    return png;
  };
  const multipart = (parts: string, boundary = 'XyZ') =>
    post(`${small}/v1/models/mnist:classify`, parts, { 'content-type': `multipart/form-data; boundary=${boundary}` });
  const form = (...files: [string, Buffer][]) => {
    const f = new FormData();
    for (const [name, bytes] of files) f.append('images', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), name);
    return f;
  };
  const classifyCases: [string, () => Promise<Response>, number, string?][] = [
    ['an undecodable PNG (signature, then garbage)', () => post(`${small}/v1/models/mnist:classify`, Buffer.concat([toPng(0).subarray(0, 40), Buffer.alloc(60, 7)]), { 'content-type': 'image/png' }), 400, 'undecodable_image'],
    ['a truncated JPEG', () => post(`${small}/v1/models/mnist:classify`, toJpeg(0).subarray(0, 200), { 'content-type': 'image/jpeg' }), 400, 'undecodable_image'],
    ['bytes that are no image at all', () => post(`${small}/v1/models/mnist:classify`, Buffer.from('GIF89a not really'), { 'content-type': 'image/gif' }), 415, 'unsupported_image'],
    ['a PNG declaring 100000x100000 pixels', () => post(`${small}/v1/models/mnist:classify`, hugePng(), { 'content-type': 'image/png' }), 413, 'image_too_large'],
    ['one bad file among good ones (multipart)', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(['ok.png', toPng(0)], ['bad.png', Buffer.from('nope')]) }), 415, 'unsupported_image'],
    ['an empty multipart body', () => multipart('--XyZ--\r\n'), 400],
    ['a multipart body with no files', () => multipart('--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'), 400, 'no_files'],
    ['a multipart body cut short', () => multipart('--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG'), 400],
    ['multipart without a boundary', () => post(`${small}/v1/models/mnist:classify`, 'x', { 'content-type': 'multipart/form-data' }), 400, 'invalid_multipart'],
    ['an empty raw body', () => post(`${small}/v1/models/mnist:classify`, new Uint8Array(0), { 'content-type': 'image/png' }), 400, 'empty_body'],
    ['text/plain', () => post(`${small}/v1/models/mnist:classify`, 'a digit', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['JSON', () => post(`${small}/v1/models/mnist:classify`, { instances: [img] }), 415, 'unsupported_media_type'],
    ['more files than maxBatch', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(...range(MAX_BATCH + 1).map((i) => [`${i}.png`, toPng(i)] as [string, Buffer])) }), 413],
    ['a raw body over maxBodyBytes', () => post(`${small}/v1/models/mnist:classify`, Buffer.alloc(MAX_BODY + 1, 1), { 'content-type': 'image/png' }), 413, 'body_too_large'],
    ['one file over maxBodyBytes', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(['big.png', Buffer.alloc(MAX_BODY + 10, 1)]) }), 413],
    ['files that together exceed maxBodyBytes', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(...range(3).map((i) => [`${i}.png`, Buffer.alloc(MAX_BODY / 2, 1)] as [string, Buffer])) }), 413],
    ['invert=maybe', () => post(`${small}/v1/models/mnist:classify?invert=maybe`, toPng(0), { 'content-type': 'image/png' }), 400, 'invalid_query'],
  ];
  for (const [name, send, status, code] of classifyCases) {
    it(`classify: ${name} → ${status}`, async () => {
      await expectV1Error(await send(), status, code);
    });
  }

  it('unknown routes are 404 in the error shape', async () => {
    await expectV1Error(await fetch(`${small}/v1/models/mnist:explain`, { method: 'POST' }), 404, 'route_not_found');
  });

  it('left no 5xx behind: no unhandled error was logged and the server still serves', async () => {
    expect(logLines.filter((l) => l.includes('unhandled error'))).toEqual([]);
    const res = await pred({ instances: [img] });
    expect(res.status).toBe(200);
  });
});

describe('model versions', () => {
  let v2: number;

  it('hot-swaps to a newly promoted version under load without a single failed request; the answers change with it', async () => {
    // Version 2 answers differently from version 1 on purpose: its output bias (the last 10 weights)
    // makes it say `forced` for every image, a class version 1 gives neither of the two images.
    const forced = [0, 1, 2, 3].find((c) => c !== expected[1] && c !== expected[2])!;
    const flat2 = Float32Array.from(trainedFlat);
    flat2[flat2.length - 10 + forced]! += 50;
    const body = JSON.stringify({ instances: [flatImage(1), flatImage(2)] });
    const seen: number[] = [];
    const answers = new Map<number, Set<string>>();
    let observing = true;
    let observerFailures = 0;
    const observe = async () => {
      while (observing) {
        const res = await post(`${base}/v1/models/mnist:predict`, body);
        if (res.status !== 200) observerFailures++;
        const b = (await res.json()) as { model_version: string; classes: number[] };
        expect(res.headers.get('x-model-version')).toBe(b.model_version);
        const version = Number(b.model_version);
        seen.push(version);
        answers.set(version, (answers.get(version) ?? new Set()).add(JSON.stringify(b.classes)));
      }
    };
    const observer = observe();
    const load = autocannon({ url: `${base}/v1/models/mnist:predict`, method: 'POST', headers: { 'content-type': 'application/json' }, body, connections: 4, duration: 3 });
    await vi.waitFor(() => expect(seen.filter((v) => v === v1).length, 'answers from version 1 under load').toBeGreaterThanOrEqual(3), { timeout: 15_000, interval: 20 });
    v2 = await publishPromoted(db.pool, { ...weightsRow(flat2), parentVersion: v1 });
    await vi.waitFor(() => expect(seen.at(-1), 'responses from version 2').toBe(v2), { timeout: 15_000, interval: 20 });
    const result = await load;
    observing = false;
    await observer;
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(result['2xx']).toBeGreaterThan(10);
    expect(observerFailures).toBe(0);
    expect(seen[0]).toBe(v1);
    expect(seen.at(-1)).toBe(v2);
    // Once a response came from the new version, none came from the old one again.
    const firstNew = seen.indexOf(v2);
    expect(seen.slice(firstNew).every((v) => v === v2)).toBe(true);
    expect(holder.current?.version).toBe(v2);
    // Every answer labelled with a version is that version's answer: the weights really changed.
    expect([...answers.get(v1)!]).toEqual([JSON.stringify([expected[1], expected[2]])]);
    expect([...answers.get(v2)!]).toEqual([JSON.stringify([forced, forced])]);
  });

  it('refuses a version whose stored checksum does not match its bytes; the previous one keeps serving', async () => {
    const row = weightsRow(trainedFlat.map((v) => v * 0.5));
    const bad = await publishPromoted(db.pool, { ...row, checksum: 'ab'.repeat(32) });
    await vi.waitFor(() => expect(logLines.some((l) => l.includes('refusing model version') && l.includes(`"version":${bad}`)), 'the refusal').toBe(true), { timeout: 15_000, interval: 20 });
    expect(holder.current?.version).toBe(v2);
    const res = await post(`${base}/v1/models/mnist:predict`, { instances: [flatImage(0)] });
    expect(res.headers.get('x-model-version')).toBe(String(v2));
  });

  it('refuses a version whose bytes are corrupted (stored checksum recomputed over the damage)', async () => {
    const { bytes } = weightsRow(trainedFlat.map((v) => v * 0.25));
    const damaged = Buffer.from(bytes);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    const bad = await publishPromoted(db.pool, { bytes: damaged, checksum: sha256Hex(damaged), manifest: { tensors: referenceModelSpec() } });
    await vi.waitFor(() => expect(logLines.some((l) => l.includes('refusing model version') && l.includes(`"version":${bad}`)), 'the refusal').toBe(true), { timeout: 15_000, interval: 20 });
    expect(holder.current?.version).toBe(v2);
    expect((await holder.refresh())?.version).toBe(v2);
    const res = await post(`${base}/v2/models/mnist/infer`, { inputs: [{ name: 'images', shape: [1, 784], datatype: 'FP32', data: flatImage(0) }] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-model-version')).toBe(String(v2));
  });

  it('a cold start after a corrupt promotion serves the newest good promoted version, not nothing', async () => {
    const cold = new ModelHolder(db.pool, log);
    const loaded = await cold.refresh();
    expect(loaded?.version).toBe(v2);
    const app = createServingApp({ holder: cold, log, nodeId: 'node-1', maxBatch: 8, maxBodyBytes: 1 << 20 });
    const url = await listenOn(app);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    const res = await post(`${url}/v1/models/mnist:predict`, { instances: [flatImage(0)] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-model-version')).toBe(String(v2));
  });

  it('moves on to the next good version after the corrupt ones', async () => {
    const v5 = await publishPromoted(db.pool, weightsRow(trainedFlat));
    await vi.waitFor(() => expect(holder.current?.version, 'the next good version').toBe(v5), { timeout: 15_000, interval: 20 });
    const res = await post(`${base}/v1/models/mnist:predict`, { instances: [flatImage(0)] });
    expect(res.headers.get('x-model-version')).toBe(String(v5));
    expect(((await res.json()) as { classes: number[] }).classes).toEqual([expected[0]]);
  });
});

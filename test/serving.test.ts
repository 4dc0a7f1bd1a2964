import { describe, expect, it, vi } from 'vitest';
import autocannon from 'autocannon';
import { sha256Hex } from '../services/core/codec.js';
import { argmaxRows, referenceModelSpec } from '../services/core/model.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { publishPromoted } from './helpers/promote.js';
import {
  EVAL, base, db, expected, flatImage, heldOut, holder, image28, image28x1, listenOn, log, logLines, pixels, post, range, toJpeg, toPng, trainedFlat,
  expectV1Error, expectV2Error, useServingFixture, weightsRow,
} from './helpers/serving-fixture.js';

// How bad input is refused: serving-bad-input.test.ts.
useServingFixture({ trained: true, promoted: false });
let v1: number;

function accuracy(classes: number[]): number {
  return classes.filter((c, i) => c === heldOut.labels[i]).length / classes.length;
}

function expectVersion(res: Response, body: { model_version?: unknown }, version: number) {
  expect(res.headers.get('x-model-version')).toBe(String(version));
  expect(body.model_version).toBe(String(version));
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

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { buildModel, tensorSpecsOf } from '../services/core/model.js';
import { orderWeights, readLayersModelFile } from '../services/core/layers-model.js';
import { decodeWeights } from '../services/core/codec.js';
import { createLogger } from '../services/shared/log.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { createAggregatorApp } from '../aggregator/app.js';
import { Federation } from '../aggregator/federation.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset, type TrainTestSplit } from '../datasets/types.js';
import { runModelSpec } from '../services/store/run-model.js';
import { loadConfig } from '../services/shared/config.js';
import { nodeDataFor } from '../services/core/node-data.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { serverGroup } from './helpers/serve.js';
import { mlp, rgbCnn, saveLayersModel } from './helpers/layers-files.js';

/**
 * A user's multilayer perceptron (saved as a Layers model.json) trained by a federation and
 * served: the trainers and the serving function have only the reference CNN built in and
 * learn the model from the store.
 */
const log = createLogger({ service: 'test' }, 'error');
const servers = serverGroup();
let db: TestDatabase;
let federation: Federation;
let holder: ModelHolder;
let split: TrainTestSplit;
let aggUrl: string;
let servingUrl: string;

const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

beforeAll(async () => {
  await initBackend();
  db = await createTestDatabase();
  split = builtinMnistSplit({ testSize: 300, seed: 7 });
  const file = await saveLayersModel(mlp(), path.join(mkdtempSync(path.join(tmpdir(), 'edgefl-byom-')), 'digits-mlp'));
  const { spec, weights } = readLayersModelFile(file);
  const model = { spec, weights: orderWeights(weights, tensorSpecsOf(spec)), source: file };
  const trainers = [];
  for (let n = 0; n < 2; n++) {
    const shard = subset(split.train, Array.from({ length: 400 }, (_, i) => n * 400 + i));
    const app = createTrainerApp({ pool: db.pool, nodeId: `node-${n}`, shard, model: buildModel(1), log });
    trainers.push({ nodeId: `node-${n}`, url: (await servers.listen(app)).url });
  }
  // node-2 reads its own folder of digit PNGs (one of them broken) instead of a built-in slice.
  const own = mkdtempSync(path.join(tmpdir(), 'edgefl-own-'));
  for (let i = 0; i < 200; i++) {
    const png = new PNG({ width: 28, height: 28 });
    for (let p = 0; p < 784; p++) png.data.set([0, 0, 0, 255].map((v, c) => (c < 3 ? Math.round(split.train.images[(1000 + i) * 784 + p]! * 255) : v)), p * 4);
    mkdirSync(path.join(own, String(split.train.labels[1000 + i])), { recursive: true });
    writeFileSync(path.join(own, String(split.train.labels[1000 + i]), `${i}.png`), PNG.sync.write(png));
  }
  writeFileSync(path.join(own, '3', 'broken.png'), 'not a png');
  const ownCfg = loadConfig({ EDGEFL_NODE_DATA: own, EDGEFL_PARTITION: 'none' });
  const emptyShard = subset(split.train, []);
  const ownApp = createTrainerApp({ pool: db.pool, nodeId: 'node-2', shard: emptyShard, model: buildModel(1), log, dataFor: nodeDataFor(ownCfg) });
  trainers.push({ nodeId: 'node-2', url: (await servers.listen(ownApp)).url });
  holder = new ModelHolder(db.pool, log);
  servingUrl = (await servers.listen(createServingApp({ holder, log, nodeId: 'node-0', maxBatch: 64, maxBodyBytes: 1 << 20 }))).url;
  const targets = async () => trainers;
  federation = new Federation({ pool: db.pool, log, heldOut: split.test, trainers: targets, retryBackoffMs: 50, model });
  aggUrl = (await servers.listen(createAggregatorApp({ pool: db.pool, federation, log, trainers: targets, servingUrls: () => [servingUrl] }))).url;
});

afterAll(async () => {
  await federation?.shutdown();
  await servers.closeAll();
  await db?.close();
});

const digits = (n: number) => Array.from({ length: n }, (_, i) => Array.from(split.test.images.subarray(i * 784, (i + 1) * 784)));

describe('bring your own model: an MLP model.json', () => {
  let runId: string;

  it('trains through the federation: the run stores its model, updates carry the MLP weights, accuracy rises', async () => {
    const res = await post(`${aggUrl}/runs`, { rounds: 3, epochs: 2, learningRate: 0.005, minQuorum: 2, roundTimeoutS: 120, targetAccuracy: 1 });
    expect(res.status).toBe(201);
    runId = (await res.json()).id;
    await federation.idle();
    const run = await store.getRun(db.pool, runId);
    expect(run?.status).toBe('completed');
    const spec = await runModelSpec(db.pool, runId);
    expect(spec).toMatchObject({ name: 'digits-mlp', inputShape: [28, 28, 1], classes: 10 });
    const rounds = await store.listRounds(db.pool, runId);
    expect(rounds.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
    const initial = await store.getModel(db.pool, run!.initialVersion!);
    const latest = await store.getModel(db.pool, run!.latestVersion!);
    // The weights are the MLP's (50,890 values), not the CNN's.
    expect(decodeWeights(latest!.bytes, tensorSpecsOf(spec)).flat.length).toBe(784 * 64 + 64 + 64 * 10 + 10);
    expect(Number(latest!.metrics.accuracy)).toBeGreaterThan(Number(initial!.metrics.accuracy) + 0.3);
    // The node with its own folder trained on all of it and reported the file it could not read.
    const own = (await store.listRunUpdates(db.pool, runId)).filter((u) => u.nodeId === 'node-2');
    expect(own).toHaveLength(3);
    expect(own[0]!.sampleCount).toBe(200);
    expect(own[0]!.metrics.skippedFiles).toBe(1);
  });

  it('serves through TF Serving v1, Open Inference v2 and image upload under its own name', async () => {
    const loaded = await holder.refresh();
    expect(loaded?.spec?.name).toBe('digits-mlp');
    const v1 = await post(`${servingUrl}/v1/models/digits-mlp:predict`, { instances: digits(3) });
    expect(v1.status).toBe(200);
    const v1Body = await v1.json();
    expect(v1Body.predictions).toHaveLength(3);
    expect(v1Body.predictions[0]).toHaveLength(10);
    const correct = v1Body.classes.filter((c: number, i: number) => c === split.test.labels[i]).length;
    expect(correct).toBeGreaterThanOrEqual(2);

    const v2 = await post(`${servingUrl}/v2/models/digits-mlp/infer`, { inputs: [{ name: 'images', shape: [2, 28, 28, 1], datatype: 'FP32', data: digits(2).flat() }] });
    expect(v2.status).toBe(200);
    expect((await v2.json()).outputs[0].shape).toEqual([2, 10]);
    const meta = await (await fetch(`${servingUrl}/v2/models/digits-mlp`)).json();
    expect(meta.inputs[0].shape).toEqual([-1, 28, 28, 1]);

    const png = new PNG({ width: 28, height: 28 });
    for (let i = 0; i < 784; i++) png.data.set([split.test.images[i]! * 255, split.test.images[i]! * 255, split.test.images[i]! * 255, 255], i * 4);
    const upload = await fetch(`${servingUrl}/v1/models/digits-mlp:classify?preprocess=resize&invert=false`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: PNG.sync.write(png) });
    expect(upload.status).toBe(200);
    expect((await upload.json()).results[0].probabilities).toHaveLength(10);
    // The reference CNN's name is not this model's.
    expect((await post(`${servingUrl}/v1/models/mnist:predict`, { instances: digits(1) })).status).toBe(404);
  });

  it('refuses input of another shape with a 400 naming the shape the model expects', async () => {
    const wrong = await post(`${servingUrl}/v1/models/digits-mlp:predict`, { instances: [Array(32 * 32 * 3).fill(0)] });
    expect(wrong.status).toBe(400);
    expect((await wrong.json()).error).toMatch(/784 values \(\[784\], \[28,28\], \[28,28,1\]\)/);
    const v2 = await post(`${servingUrl}/v2/models/digits-mlp/infer`, { inputs: [{ name: 'images', shape: [1, 32, 32, 3], datatype: 'FP32', data: Array(3072).fill(0) }] });
    expect(v2.status).toBe(400);
    expect((await v2.json()).error).toMatch(/\[28,28,1\]/);
  });

  it('refuses at POST /runs a model the held-out data cannot evaluate (a 32x32x3 model against 28x28 digits)', async () => {
    const res = await post(`${aggUrl}/runs`, { rounds: 1, model: rgbCnn(4).toJSON(null, false) });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toMatchObject({ code: 'model_data_mismatch', message: expect.stringContaining('32x32x3') });
  });
});

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { buildModel, evaluate } from '../services/core/model.js';
import { specFromTopology } from '../services/core/layers-model.js';
import { trainLocal } from '../services/core/train.js';
import { loadNodeDir, NodeDataError } from '../datasets/node-dir.js';
import { encodeIdx } from '../datasets/idx.js';
import { loadConfig } from '../services/shared/config.js';
import { loadNodeShard, nodeDataFor } from '../services/core/node-data.js';
import { TrainerModels } from '../services/trainer/run-model.js';
import { saveRunModel } from '../services/store/run-model.js';
import { HttpError } from '../services/http/errors.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { rgbCnn } from './helpers/layers-files.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'edgefl-node-data-'));

/** Three colour classes a small CNN can tell apart: red-ish, green-ish and blue-ish squares with noise, at 40x40 (resized to 32x32). */
function writeRgbFolders(dir: string, perClass: number, seed = 1): void {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  ['red', 'green', 'blue'].forEach((name, c) => {
    mkdirSync(path.join(dir, name), { recursive: true });
    for (let k = 0; k < perClass; k++) {
      const png = new PNG({ width: 40, height: 40 });
      for (let i = 0; i < 1600; i++) {
        const px = [0, 1, 2].map((ch) => Math.round(255 * (ch === c ? 0.5 + 0.5 * rand() : 0.5 * rand())));
        png.data.set([...px, 255], i * 4);
      }
      writeFileSync(path.join(dir, name, `${k}.png`), PNG.sync.write(png));
    }
  });
}

beforeAll(async () => {
  await initBackend();
});

describe('node-local data directories', () => {
  it('reads image folders as RGB at the model size, skipping and counting unreadable files', () => {
    const dir = tmp();
    writeRgbFolders(dir, 4);
    writeFileSync(path.join(dir, 'red', 'broken.png'), 'not a png');
    writeFileSync(path.join(dir, 'blue', 'notes.txt'), 'ignored: not an image name');
    const data = loadNodeDir(dir, [32, 32, 3]);
    expect(data).toMatchObject({ format: 'images', skipped: 1, classNames: ['blue', 'green', 'red'] });
    expect(data.set.count).toBe(12);
    expect(data.set.images.length).toBe(12 * 32 * 32 * 3);
    // blue is class 0 (sorted names): its blue channel dominates.
    const first = data.set.images.subarray(0, 3072);
    const mean = (ch: number) => first.filter((_, i) => i % 3 === ch).reduce((a, b) => a + b, 0) / 1024;
    expect(data.set.labels[0]).toBe(0);
    expect(mean(2)).toBeGreaterThan(mean(0) + 0.3);
  });

  it('reads CSV (label, pixels 0..255) with a header, skipping and counting malformed lines', () => {
    const dir = tmp();
    const row = (label: number, v: number) => [label, ...Array(16).fill(v)].join(',');
    writeFileSync(path.join(dir, 'part1.csv'), ['label,' + Array.from({ length: 16 }, (_, i) => `p${i}`).join(','), row(1, 255), row(0, 0), '3,1,2', row(2, 300)].join('\n'));
    const data = loadNodeDir(dir, [4, 4, 1]);
    expect(data).toMatchObject({ format: 'csv', skipped: 2 });
    expect(Array.from(data.set.labels)).toEqual([1, 0]);
    expect(data.set.images[0]).toBe(1);
  });

  it('reads IDX files', () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'train-images-idx3-ubyte'), encodeIdx([2, 2, 2], Uint8Array.from([0, 255, 0, 255, 255, 0, 255, 0])));
    writeFileSync(path.join(dir, 'train-labels-idx1-ubyte'), encodeIdx([2], Uint8Array.from([3, 4])));
    const data = loadNodeDir(dir, [2, 2, 1]);
    expect(data.format).toBe('idx');
    expect(Array.from(data.set.labels)).toEqual([3, 4]);
  });

  it('refuses a directory that is missing or holds nothing it can read, naming it', () => {
    const dir = tmp();
    expect(() => loadNodeDir(path.join(dir, 'nope'), [28, 28, 1])).toThrow(NodeDataError);
    expect(() => loadNodeDir(dir, [28, 28, 1])).toThrow(new RegExp(`${dir}: no IDX files, no .csv files and no class folders`));
  });

  it('EDGEFL_PARTITION=none: all of the directory is this node\'s; another partition takes this node\'s part', () => {
    const dir = tmp();
    writeRgbFolders(dir, 6);
    const env = { EDGEFL_NODE_DATA: dir, EDGEFL_NODES: '3', EDGEFL_NODE_ID: '1' };
    const spec = specFromTopology(rgbCnn(3).toJSON(null, false));
    expect(loadNodeShard(loadConfig({ ...env, EDGEFL_PARTITION: 'none' }), spec).shard.count).toBe(18);
    expect(loadNodeShard(loadConfig({ ...env, EDGEFL_PARTITION: 'iid' }), spec).shard.count).toBe(6);
  });

  it('a 32x32x3 model trains on an RGB image-folder dataset', async () => {
    const dir = tmp();
    writeRgbFolders(dir, 20);
    const spec = specFromTopology(rgbCnn(3).toJSON(null, false));
    const { set } = loadNodeDir(dir, spec.inputShape);
    const model = buildModel(3, spec);
    const before = evaluate(model, set.images, set.labels).accuracy;
    const result = await trainLocal(model, set, { epochs: 4, batchSize: 10, learningRate: 0.01 });
    const after = evaluate(model, set.images, set.labels).accuracy;
    expect(result.samples).toBe(60);
    expect(after).toBeGreaterThan(0.9);
    expect(after).toBeGreaterThan(before);
    model.dispose();
  });
});

describe("a trainer's own data against the run's model", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.close();
  });

  const trainerFor = (dir: string) => {
    const cfg = loadConfig({ EDGEFL_NODE_DATA: dir, EDGEFL_PARTITION: 'none' });
    const shard = { images: new Float32Array(0), labels: new Uint8Array(0), count: 0, rows: 0, cols: 0, numClasses: 0 };
    return new TrainerModels({ pool: db.pool, model: buildModel(1), shard, dataFor: nodeDataFor(cfg) });
  };
  const failure = async (p: Promise<unknown>) => {
    const e = await p.then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(HttpError);
    return e as HttpError;
  };

  it('loads the node data in the shape of the run model and counts skipped files', async () => {
    const dir = tmp();
    writeRgbFolders(dir, 2);
    writeFileSync(path.join(dir, 'green', 'bad.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0, 1, 2]));
    await saveRunModel(db.pool, 'run-rgb', specFromTopology(rgbCnn(3).toJSON(null, false), 'rgb'), 'test');
    const { data, spec } = await trainerFor(dir).forRun('run-rgb');
    expect(spec.name).toBe('rgb');
    expect(data).toMatchObject({ skipped: 1, source: dir });
    expect(data.set.count).toBe(6);
  });

  it('fails the round with a 4xx naming the path: no usable samples, unreadable directory, labels outside the classes', async () => {
    await saveRunModel(db.pool, 'run-2', specFromTopology(rgbCnn(2).toJSON(null, false), 'two'), 'test');
    const empty = tmp();
    mkdirSync(path.join(empty, 'cats'));
    writeFileSync(path.join(empty, 'cats', 'x.png'), 'garbage');
    const noSamples = await failure(trainerFor(empty).forRun('run-2'));
    expect(noSamples).toMatchObject({ status: 422, code: 'no_usable_samples' });
    expect(noSamples.message).toContain(empty);
    expect(noSamples.message).toContain('1 file(s) skipped');

    const missing = await failure(trainerFor(path.join(empty, 'absent')).forRun('run-2'));
    expect(missing).toMatchObject({ status: 422, code: 'node_data_unreadable' });
    expect(missing.message).toContain(path.join(empty, 'absent'));

    const three = tmp();
    writeRgbFolders(three, 1); // three classes for a two-class model
    const labels = await failure(trainerFor(three).forRun('run-2'));
    expect(labels).toMatchObject({ status: 422, code: 'label_out_of_range' });
    expect(labels.message).toMatch(/label 2, outside model 'two''s classes 0..1/);
  });

  it('refuses data of another size than the model takes', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'd.csv'), '1,' + Array(16).fill(0).join(','));
    await saveRunModel(db.pool, 'run-shape', specFromTopology(rgbCnn(2).toJSON(null, false), 'rgb2'), 'test');
    const cfg = loadConfig({ EDGEFL_NODE_DATA: dir, EDGEFL_PARTITION: 'none' });
    // CSV rows of 16 values are skipped for a 3072-value model: nothing usable is left.
    const e = await failure(new TrainerModels({ pool: db.pool, model: buildModel(1), shard: loadNodeShard(cfg).shard, dataFor: nodeDataFor(cfg) }).forRun('run-shape'));
    expect(e.code).toBe('no_usable_samples');
  });
});

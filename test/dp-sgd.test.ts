import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { PIXELS, buildModel, evaluate, getFlatWeights } from '../services/core/model.js';
import { disposeTrace, im2col, materializePerExample, opsOf, traceBatch } from '../services/core/privacy/per-example.js';
import { clipFactors, poissonSample, privateGradient, secureRng, trainLocalDp } from '../services/core/privacy/dp-sgd.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { DP_CNN } from '../services/core/model-zoo.js';
import { createRng } from '../datasets/rng.js';

const split = builtinMnistSplit({ testSize: 200, seed: 3 });
const train = split.train;
type Model = ReturnType<typeof buildModel>;
let model: Model;
/** The small tanh CNN: strided 'same' and 'valid' convs, stride-1 pools, tanh everywhere. */
let dpModel: Model;

function batchOf(from: number, n: number): { pixels: Float32Array; labels: Int32Array } {
  return {
    pixels: train.images.slice(from * PIXELS, (from + n) * PIXELS),
    labels: Int32Array.from(train.labels.subarray(from, from + n)),
  };
}

/** The reference: tf.grads of ONE example's loss through the Layers model itself (inference mode: no dropout). */
function batchOneGradient(m: Model, pixels: Float32Array, label: number): Float32Array {
  const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
  return tf.tidy(() => {
    const x = tf.tensor4d(pixels, [1, 28, 28, 1]);
    const y = tf.oneHot(tf.tensor1d([label], 'int32'), 10);
    const { grads } = tf.variableGrads(() => {
      const p = m.apply(x, { training: false }) as tf.Tensor;
      return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1))))) as tf.Scalar;
    }, vars);
    return tf.concat(vars.map((v) => tf.reshape(grads[v.name]!, [-1]))).dataSync() as Float32Array;
  });
}

const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

beforeAll(async () => {
  await initBackend('wasm');
  model = buildModel(7);
  dpModel = buildModel(7, DP_CNN);
});
afterAll(() => {
  model.dispose();
  dpModel.dispose();
});

describe('per-example gradients', () => {
  it('im2col lays out taps like the kernel, so patches · kernel equals the convolution', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([2, 9, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const k = tf.randomNormal([3, 2, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
      const viaPatches = tf.matMul(tf.tensor2d(im2col(x.dataSync() as Float32Array, x.shape, { kh: 3, kw: 2 }), [2 * 7 * 7, 18]), tf.reshape(k, [18, 4]));
      const direct = tf.reshape(tf.conv2d(x, k, 1, 'valid'), [2 * 7 * 7, 4]);
      expect(tf.max(tf.abs(tf.sub(viaPatches, direct))).dataSync()[0]).toBeLessThan(1e-4);
    });
  });

  it.each([
    ['same', 2, 7],
    ['valid', 2, 5],
    ['same', 3, 5],
  ] as const)('im2col of a %s conv at stride %i zero-fills the padding (%i output rows)', (padding, stride, positions) => {
    tf.tidy(() => {
      const x = tf.randomNormal([2, 13, 9, 2], 0, 1, 'float32', 3) as tf.Tensor4D;
      const k = tf.randomNormal([4, 3, 2, 5], 0, 1, 'float32', 4) as tf.Tensor4D;
      const direct = tf.conv2d(x, k, stride, padding);
      expect(direct.shape[1]).toBe(positions);
      const rows = 2 * direct.shape[1] * direct.shape[2];
      const cols = im2col(x.dataSync() as Float32Array, x.shape, { kh: 4, kw: 3, strides: [stride, stride], padding });
      const viaPatches = tf.matMul(tf.tensor2d(cols, [rows, 24]), tf.reshape(k, [24, 5]));
      expect(tf.max(tf.abs(tf.sub(viaPatches, tf.reshape(direct, [rows, 5])))).dataSync()[0]).toBeLessThan(1e-4);
    });
  });

  it.each(['reference CNN', 'dp-cnn'])('equal the gradient of a batch-1 backward pass through the %s, for every example', (name) => {
    const m = name === 'dp-cnn' ? dpModel : model;
    const { pixels, labels } = batchOf(0, 6);
    const trace = traceBatch(opsOf(m), pixels, labels);
    const perExample = materializePerExample(trace);
    disposeTrace(trace);
    expect(perExample).toHaveLength(6);
    for (let i = 0; i < 6; i++) {
      const ref = batchOneGradient(m, pixels.subarray(i * PIXELS, (i + 1) * PIXELS), labels[i]!);
      expect(perExample[i]!.length).toBe(ref.length);
      let maxDiff = 0;
      for (let j = 0; j < ref.length; j++) maxDiff = Math.max(maxDiff, Math.abs(perExample[i]![j]! - ref[j]!));
      // float32 sums of up to 576 terms in different orders
      expect(maxDiff / norm(ref)).toBeLessThan(1e-4);
      expect(norm(ref)).toBeGreaterThan(0);
    }
  });
});

describe('clipping', () => {
  it('bounds every per-example gradient by C and leaves smaller ones untouched', () => {
    const { pixels, labels } = batchOf(10, 8);
    const trace = traceBatch(opsOf(model), pixels, labels);
    const perExample = materializePerExample(trace);
    disposeTrace(trace);
    const norms = perExample.map(norm);
    const clip = [...norms].sort((a, b) => a - b)[3]!; // half the examples exceed it
    const f = clipFactors(norms.map((n) => n * n), clip);
    let clipped = 0;
    norms.forEach((n, i) => {
      expect(n * f[i]!).toBeLessThanOrEqual(clip * (1 + 1e-5));
      if (n <= clip) expect(f[i]).toBeCloseTo(1, 4);
      else clipped++;
    });
    expect(clipped).toBe(4);
  });

  it('the released sum (σ = 0) equals the sum of individually clipped gradients', () => {
    const { pixels, labels } = batchOf(20, 5);
    const ops = opsOf(model);
    const trace = traceBatch(ops, pixels, labels);
    const perExample = materializePerExample(trace);
    disposeTrace(trace);
    const C = 0.5;
    const want = new Float32Array(perExample[0]!.length);
    for (const g of perExample) {
      const s = Math.min(1, C / (norm(g) + 1e-6));
      g.forEach((x, j) => (want[j]! += s * x));
    }
    const { grads } = privateGradient(ops, pixels, labels, { clipNorm: C, noiseMultiplier: 0 }, 1, createRng(1));
    const got = tf.tidy(() => tf.concat(grads.map((g) => tf.reshape(g, [-1]))).dataSync() as Float32Array);
    tf.dispose(grads);
    let maxDiff = 0;
    want.forEach((w, j) => (maxDiff = Math.max(maxDiff, Math.abs(w - got[j]!))));
    expect(maxDiff / norm(want)).toBeLessThan(1e-4);
    expect(norm(got)).toBeLessThanOrEqual(5 * C * (1 + 1e-5));
  });
});

describe('noise', () => {
  it('has the calibrated standard deviation σ·C / expected batch (fixed seeds)', () => {
    const ops = opsOf(model);
    const { pixels, labels } = batchOf(30, 4);
    const cfg = { clipNorm: 1.5, noiseMultiplier: 1.1 };
    const L = 64;
    const flat = (seed: number) => {
      const { grads } = privateGradient(ops, pixels, labels, cfg, L, createRng(seed));
      const v = tf.tidy(() => tf.concat(grads.map((g) => tf.reshape(g, [-1]))).dataSync() as Float32Array);
      tf.dispose(grads);
      return v;
    };
    // Same batch, two noise draws: the difference is pure noise with std √2·σC/L.
    const a = flat(11);
    const b = flat(12);
    let sum = 0;
    let sq = 0;
    for (let j = 0; j < a.length; j++) {
      const d = a[j]! - b[j]!;
      sum += d;
      sq += d * d;
    }
    const mean = sum / a.length;
    const std = Math.sqrt(sq / a.length - mean * mean);
    const want = (Math.SQRT2 * cfg.noiseMultiplier * cfg.clipNorm) / L;
    // 317,066 draws: the sample std is within ~0.2% of the truth; 1% leaves no flakiness.
    expect(Math.abs(std / want - 1)).toBeLessThan(0.01);
    expect(Math.abs(mean)).toBeLessThan(0.01 * want);
    // An empty Poisson batch still releases noise of the same scale.
    const { grads } = privateGradient(ops, new Float32Array(0), new Int32Array(0), cfg, L, secureRng());
    const e = tf.tidy(() => tf.moments(tf.concat(grads.map((g) => tf.reshape(g, [-1])))).variance.dataSync()[0]!);
    tf.dispose(grads);
    expect(Math.abs(Math.sqrt(e) / (want / Math.SQRT2) - 1)).toBeLessThan(0.01);
  });
});

describe('Poisson sampling and training', () => {
  it('draws each example independently at rate q', () => {
    const rng = createRng(9);
    const sizes = Array.from({ length: 200 }, () => poissonSample(1000, 0.05, rng).length);
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    expect(new Set(sizes).size).toBeGreaterThan(5); // batch sizes vary, unlike shuffling
    expect(Math.abs(mean - 50)).toBeLessThan(3);
  });

  it('trains: accuracy rises above chance and the ledger event describes the run', async () => {
    const m = buildModel(3);
    const data = { ...train, count: 600, images: train.images.subarray(0, 600 * PIXELS), labels: train.labels.subarray(0, 600) };
    const before = getFlatWeights(m);
    const r = await trainLocalDp(m, data, { epochs: 2, batchSize: 60, learningRate: 0.1, optimizer: 'sgd', seed: 4, dp: { clipNorm: 1, noiseMultiplier: 0.8, insecureSeed: 4 } });
    expect(r.privacy).toEqual({ samplingRate: 0.1, noiseMultiplier: 0.8, steps: 20 });
    expect(getFlatWeights(m)).not.toEqual(before);
    const acc = evaluate(m, split.test.images, split.test.labels).accuracy;
    // 20 noisy steps on 600 digits: far from converged, but well above chance (0.1).
    expect(acc).toBeGreaterThan(0.3);
    m.dispose();
  });

  it('an attacker who knows the request seed cannot reproduce the noise: same seed, different updates', async () => {
    const data = { ...train, count: 100, images: train.images.subarray(0, 100 * PIXELS), labels: train.labels.subarray(0, 100) };
    const run = async () => {
      const m = buildModel(3);
      await trainLocalDp(m, data, { epochs: 1, batchSize: 50, learningRate: 0.1, optimizer: 'sgd', seed: 42, dp: { clipNorm: 1, noiseMultiplier: 1 } });
      const w = getFlatWeights(m);
      m.dispose();
      return w;
    };
    const [a, b] = [await run(), await run()];
    let diff = 0;
    for (let j = 0; j < a.length; j++) diff = Math.max(diff, Math.abs(a[j]! - b[j]!));
    expect(diff).toBeGreaterThan(1e-3);
  });
});

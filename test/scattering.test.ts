import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

/** Counts scattering transforms (the real one runs): what an evaluation computes, and what it reuses. */
const scatterCalls = vi.hoisted(() => ({ n: 0 }));
vi.mock('../services/core/scattering-op.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../services/core/scattering-op.js')>();
  return { ...real, scatter: (...args: Parameters<typeof real.scatter>) => (scatterCalls.n++, real.scatter(...args)) };
});
import { tf } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { filterBank, scatteringChannels, type Kernel2D } from '../services/core/scattering.js';
import { scatter } from '../services/core/scattering-op.js';
import { predictWithSpec, weightSpecs, weightTensors } from '../services/core/forward.js';
import { buildModel, evaluate, getFlatWeights, modelSpec } from '../services/core/model.js';
import { trainLocal } from '../services/core/train.js';
import { SCATTER_CNN, SCATTER_LINEAR } from '../services/core/model-zoo.js';
import { parseModelSpec } from '../services/core/model-spec-schema.js';
import { opsOf } from '../services/core/privacy/per-example.js';
import { privateGradient } from '../services/core/privacy/dp-sgd.js';
import { fixedFeatureStage } from '../services/core/privacy/fixed-features.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { createRng } from '../datasets/rng.js';
import { loadDeploymentModel } from '../services/core/node-data.js';
import { byomEnv } from '../services/cli/byom-flags.js';
import { ENV, type Config } from '../services/shared/config.js';
import { toRunModel } from '../aggregator/run-model-config.js';
import { createEvaluator } from '../aggregator/round/evaluate.js';
import { splitHeldOut } from '../aggregator/promotion.js';

const split = builtinMnistSplit({ testSize: 100, seed: 5 });
const digit = (i: number) => split.test.images.slice(i * 784, (i + 1) * 784);
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
const sum = (v: Float64Array) => v.reduce((a, b) => a + b, 0);

beforeAll(async () => {
  await initBackend('wasm');
});

/** Cross-correlation of one H×W plane with a (2r+1)² kernel part, zero padding as TensorFlow's 'same' pads: the direct loops. */
function correlate(x: Float64Array, h: number, w: number, k: Kernel2D, part: 're' | 'im', stride = 1): Float64Array {
  const [oh, ow] = [Math.ceil(h / stride), Math.ceil(w / stride)];
  const top = Math.floor(Math.max((oh - 1) * stride + k.size - h, 0) / 2);
  const left = Math.floor(Math.max((ow - 1) * stride + k.size - w, 0) / 2);
  const out = new Float64Array(oh * ow);
  for (let i = 0; i < oh; i++)
    for (let j = 0; j < ow; j++) {
      let s = 0;
      for (let u = 0; u < k.size; u++)
        for (let v = 0; v < k.size; v++) {
          const [r, c] = [i * stride + u - top, j * stride + v - left];
          if (r >= 0 && r < h && c >= 0 && c < w) s += x[r * w + c]! * k[part][u * k.size + v]!;
        }
      out[i * ow + j] = s;
    }
  return out;
}

const modulus = (x: Float64Array, k: Kernel2D) => {
  const [re, im] = [correlate(x, 28, 28, k, 're'), correlate(x, 28, 28, k, 'im')];
  return re.map((r, i) => Math.hypot(r, im[i]!));
};

/** J = 2, L = 8 scattering of one 28×28 image by direct loops: 81 planes of 7×7, in scatter's channel order. */
function directScattering(image: Float32Array): Float64Array[] {
  const bank = filterBank({ J: 2, L: 8 });
  const x = Float64Array.from(image);
  const u1 = bank.psi.map((thetas) => thetas.map((k) => modulus(x, k)));
  const planes = [x, ...u1[0]!, ...u1[1]!, ...u1[0]!.flatMap((u) => bank.psi[1]!.map((k) => modulus(u, k)))];
  return planes.map((p) => correlate(p, 28, 28, bank.phi, 're', 4));
}

describe('scattering filters', () => {
  it('low-pass sums to 1, every Morlet wavelet to 0, and the scales double', () => {
    const bank = filterBank({ J: 2, L: 8 });
    expect(sum(bank.phi.re)).toBeCloseTo(1, 10);
    for (const thetas of bank.psi) for (const k of thetas) {
      expect(Math.abs(sum(k.re)) + Math.abs(sum(k.im))).toBeLessThan(1e-12);
      expect(norm(k.re) + norm(k.im)).toBeGreaterThan(0.01);
    }
    expect(bank.psi.map((t) => t[0]!.size)).toEqual([11, 21]);
    expect(scatteringChannels({ J: 2, L: 8 })).toBe(81);
  });

  it('an orientation responds to stripes across it, not along it', () => {
    // Horizontal stripes at the j = 0 centre frequency 3π/4: θ = π/2·… only the filter oscillating down the rows sees them.
    const stripes = Float64Array.from({ length: 28 * 28 }, (_, i) => Math.cos(((3 * Math.PI) / 4) * Math.floor(i / 28)));
    const energy = filterBank({ J: 2, L: 8 }).psi[0]!.map((k) => norm(modulus(stripes, k)));
    const best = energy.indexOf(Math.max(...energy));
    // θ_l = (L/2 − 1 − l)·π/L = 0 (oscillation down the rows) at l = 3.
    expect(best).toBe(3);
    expect(Math.min(...energy)).toBeLessThan(energy[best]! / 5);
  });
});

describe('scattering transform', () => {
  it('equals the direct convolutions, channel by channel', () => {
    const image = digit(0);
    const want = directScattering(image);
    const got = tf.tidy(() => scatter(tf.tensor4d(image, [1, 28, 28, 1]), { J: 2, L: 8 }).dataSync() as Float32Array);
    expect(got.length).toBe(81 * 49);
    let worst = 0;
    want.forEach((plane, c) => plane.forEach((v, p) => (worst = Math.max(worst, Math.abs(v - got[p * 81 + c]!)))));
    expect(worst / Math.max(...want.map((p) => Math.max(...p)))).toBeLessThan(1e-5);
  });

  it('is stable to small translations where pixels are not: a 1-pixel shift moves the features about half as much', () => {
    const images = [0, 1, 2, 3].map(digit);
    const shifted = images.map((im) => Float32Array.from(im, (_, i) => (i % 28 === 0 ? 0 : im[i - 1]!)));
    const features = (ims: Float32Array[]) => tf.tidy(() => scatter(tf.tensor4d(Float32Array.from(ims.flatMap((m) => [...m])), [ims.length, 28, 28, 1]), { J: 2, L: 8 }).dataSync() as Float32Array);
    const [a, b] = [features(images), features(shifted)];
    const pixelChange = images.map((im, k) => norm(im.map((v, i) => v - shifted[k]![i]!)) / norm(im));
    const featureChange = [0, 1, 2, 3].map((k) => {
      const [fa, fb] = [a.subarray(k * 3969, (k + 1) * 3969), b.subarray(k * 3969, (k + 1) * 3969)];
      return norm(fa.map((v, i) => v - fb[i]!)) / norm(fa);
    });
    // Measured: 0.41-0.51 of the pixels' relative change (raw pixels, or features without the modulus and low-pass: ~1).
    featureChange.forEach((f, k) => expect(f).toBeLessThan(0.6 * pixelChange[k]!));
  });

  it('normalises each channel group of each example to mean 0 and variance 1', () => {
    const s = tf.tidy(() => scatter(tf.tensor4d(digit(4), [1, 28, 28, 1]), { J: 2, L: 8, groups: 27 }).dataSync() as Float32Array);
    for (const g of [0, 13, 26]) {
      const values = Array.from(s).filter((_, i) => Math.floor((i % 81) / 3) === g);
      const mean = values.reduce((p, q) => p + q, 0) / values.length;
      expect(Math.abs(mean)).toBeLessThan(1e-4);
      expect(values.reduce((p, q) => p + (q - mean) ** 2, 0) / values.length).toBeCloseTo(1, 2);
    }
  });
});

describe('a model with a scattering layer', () => {
  let model: ReturnType<typeof buildModel>;
  afterAll(() => model?.dispose());

  it('serves (forward.ts) exactly what the training model (tfjs-layers) computes, with no weights for the layer', () => {
    model = buildModel(3, SCATTER_CNN);
    expect(weightSpecs(SCATTER_CNN)).toEqual(modelSpec(model));
    expect(weightSpecs(SCATTER_CNN).some((w) => w.name.startsWith('scatter/'))).toBe(false);
    const count = 40; // a partial last chunk, and more than one 32-example slice of the layer
    const pixels = split.test.images.slice(0, count * 784);
    const want = tf.tidy(() => (model.predict(tf.tensor4d(pixels, [count, 28, 28, 1])) as tf.Tensor).dataSync() as Float32Array);
    const weights = weightTensors(weightSpecs(SCATTER_CNN), getFlatWeights(model));
    const got = predictWithSpec(SCATTER_CNN, weights, pixels, count, 33);
    tf.dispose(weights);
    expect(got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i]!)), 0)).toBeLessThan(1e-5);
  });

  it('DP-SGD on the cached features takes the gradient of the whole model on the images', () => {
    const m = buildModel(4, SCATTER_LINEAR);
    const n = 6;
    const shard = { ...split.test, images: split.test.images.slice(0, n * 784), labels: split.test.labels.slice(0, n), count: n };
    const stage = fixedFeatureStage(opsOf(m), shard);
    expect(stage.inputSize).toBe(81 * 49);
    expect(fixedFeatureStage(opsOf(m), shard).data.images).toBe(stage.data.images); // computed once per shard
    const labels = Int32Array.from(shard.labels);
    const { grads } = privateGradient(stage.ops, stage.data.images, labels, { clipNorm: 1e9, noiseMultiplier: 0 }, 1, createRng(1));
    const got = tf.tidy(() => tf.concat(grads.map((g) => tf.reshape(g, [-1]))).dataSync() as Float32Array);
    tf.dispose(grads);
    const vars = m.trainableWeights.map((w) => w.read() as tf.Variable);
    const want = tf.tidy(() => {
      const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
      const { grads: g } = tf.variableGrads(() => {
        const p = m.apply(tf.tensor4d(shard.images, [n, 28, 28, 1])) as tf.Tensor;
        return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1))))) as tf.Scalar;
      }, vars);
      return tf.concat(vars.map((v) => tf.reshape(g[v.name]!, [-1]))).dataSync() as Float32Array;
    });
    expect(norm(got.map((v, i) => v - want[i]!)) / norm(want)).toBeLessThan(1e-4);
    m.dispose();
  });

  it('trains without DP on the features, once per shard, and the model itself learns', async () => {
    const m = buildModel(5, SCATTER_LINEAR);
    const train = { ...split.train, images: split.train.images.slice(0, 400 * 784), labels: split.train.labels.slice(0, 400), count: 400 };
    const before = evaluate(m, split.test.images, split.test.labels).accuracy;
    await trainLocal(m, train, { epochs: 3, batchSize: 32, learningRate: 0.01, optimizer: 'adam', seed: 1 });
    const after = evaluate(m, split.test.images, split.test.labels).accuracy;
    expect(before).toBeLessThan(0.3);
    expect(after).toBeGreaterThan(0.5); // measured 0.67 after 3 epochs on 400 digits
    m.dispose();
  });

  it('is evaluated by the aggregator on held-out features computed once: the same figures as the whole model, and no scattering in later rounds', () => {
    const m = buildModel(6, SCATTER_CNN);
    const flat = getFlatWeights(m);
    const heldOut = { ...split.test, images: split.test.images.slice() };
    const evaluator = createEvaluator(heldOut, SCATTER_CNN);
    const first = evaluator.evaluate(flat);
    const whole = evaluate(m, splitHeldOut(heldOut).validation.images, splitHeldOut(heldOut).validation.labels);
    expect(first.accuracy).toBe(whole.accuracy);
    expect(first.loss).toBeCloseTo(whole.loss, 5);
    // The first evaluation computed the validation half's features; the next one only runs the head.
    const computed = scatterCalls.n;
    expect(computed).toBeGreaterThan(0);
    expect(evaluator.evaluate(flat)).toEqual(first);
    expect(scatterCalls.n).toBe(computed);
    evaluator.dispose();
    m.dispose();
  });

  it('is refused anywhere but first, and with groups that do not divide its channels', () => {
    const layers = SCATTER_LINEAR.layers;
    const bad = parseModelSpec({ ...SCATTER_LINEAR, layers: [layers[1], layers[0], ...layers.slice(2)] });
    expect(bad).toEqual({ error: expect.stringContaining("'scatter' (scattering) must be the first layer") });
    const groups = parseModelSpec({ ...SCATTER_LINEAR, layers: [{ ...layers[0], groups: 10 }, ...layers.slice(1)] });
    expect(groups).toEqual({ error: expect.stringContaining('81 channels do not split into 10 equal groups') });
    const huge = parseModelSpec({ ...SCATTER_LINEAR, inputShape: [1024, 1024, 4], layers: [{ ...layers[0], J: 4, L: 16 }, ...layers.slice(1)] });
    expect(huge).toEqual({ error: expect.stringContaining('64 MiB') });
    expect(parseModelSpec(SCATTER_CNN)).toEqual({ spec: SCATTER_CNN });
  });
});

describe('a built-in model by name', () => {
  it('is what --model / EDGEFL_MODEL name, where a path stays a path', () => {
    expect(loadDeploymentModel({ model: 'scatter-linear' } as Config)).toEqual({ spec: SCATTER_LINEAR, source: 'the built-in scatter-linear' });
    expect(byomEnv({ model: 'scatter-cnn' })).toEqual({ [ENV.model]: 'scatter-cnn' });
    expect(byomEnv({ model: 'models/x.json' })[ENV.model]).toMatch(/^\/.*models\/x\.json$/);
    expect(() => loadDeploymentModel({ model: 'no-such-model' } as Config)).toThrow(/no-such-model/);
  });

  it("is what POST /runs takes as a string 'model'; an unknown name is a clear error", () => {
    expect(toRunModel('scatter-linear')).toEqual({ spec: SCATTER_LINEAR });
    expect(toRunModel('scatter-linear\u0000'.repeat(40))).toEqual({ error: expect.stringContaining('is not a built-in model (reference, dp-cnn, scatter-linear, scatter-cnn)') });
    expect(toRunModel(SCATTER_CNN)).toEqual({ spec: SCATTER_CNN });
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { forward, predictWithSpec, weightSpecs, weightTensors } from '../services/core/forward.js';
import { buildModel, getFlatWeights, modelSpec, predictProbabilities, referenceModelSpec } from '../services/core/model.js';
import { REFERENCE_CNN, type ModelSpec } from '../services/core/model-spec.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/** A spec with what the reference CNN lacks: same padding, strides, tanh/sigmoid/linear, dense after dense. */
const OTHER: ModelSpec = {
  name: 'other',
  inputShape: [12, 10, 3],
  classes: 4,
  layers: [
    { kind: 'conv2d', name: 'c1', filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'tanh' },
    { kind: 'maxPooling2d', name: 'p1', poolSize: 2, strides: 1 },
    { kind: 'flatten', name: 'f' },
    { kind: 'dense', name: 'd1', units: 9, activation: 'sigmoid' },
    { kind: 'dropout', name: 'x', rate: 0.5 },
    { kind: 'dense', name: 'd2', units: 7, activation: 'linear' },
    { kind: 'dense', name: 'd3', units: 4, activation: 'softmax' },
  ],
};

beforeAll(async () => {
  await initBackend('wasm');
});

describe('forward pass of a spec on tfjs-core ops', () => {
  it('has the weight manifest of the tfjs-layers model, without building it', () => {
    for (const spec of [REFERENCE_CNN, OTHER]) {
      const model = buildModel(3, spec);
      expect(weightSpecs(spec)).toEqual(modelSpec(model));
      model.dispose();
    }
    expect(referenceModelSpec()).toEqual(weightSpecs(REFERENCE_CNN));
  });

  it.each([
    ['the reference CNN', REFERENCE_CNN],
    ['a spec with same padding, strides and other activations', OTHER],
  ])('predicts what the tfjs-layers model predicts for %s', (_, spec) => {
    const model = buildModel(5, spec);
    const [h, w, c] = spec.inputShape;
    const count = 37;
    const pixels = spec === REFERENCE_CNN ? builtinMnistSplit().test.images.slice(0, count * h * w * c) : Float32Array.from({ length: count * h * w * c }, (_, i) => ((i * 7919) % 255) / 255);
    const expected = tf.tidy(() => (model.predict(tf.tensor4d(pixels, [count, h, w, c])) as tf.Tensor).dataSync() as Float32Array);
    const weights = weightTensors(weightSpecs(spec), getFlatWeights(model));
    // Chunks of 16 also cover the chunked path (a partial last chunk).
    const got = predictWithSpec(spec, weights, pixels, count, 16);
    expect(got.length).toBe(count * spec.classes);
    expect(maxAbsDiff(got, expected)).toBeLessThan(1e-5);
    if (spec === REFERENCE_CNN) expect(maxAbsDiff(got, predictProbabilities(model, pixels, count))).toBeLessThan(1e-5);
    tf.dispose(weights);
    model.dispose();
  });

  it('applies dropout only when training asks for it', () => {
    const model = buildModel(2);
    const weights = weightTensors(weightSpecs(REFERENCE_CNN), getFlatWeights(model));
    const x = tf.ones([2, 28, 28, 1]) as tf.Tensor4D;
    const seen: number[] = [];
    const plain = tf.tidy(() => forward(REFERENCE_CNN, weights, x).dataSync() as Float32Array);
    const dropped = tf.tidy(() => forward(REFERENCE_CNN, weights, x, (t, i) => (seen.push(i), tf.zerosLike(t))).dataSync() as Float32Array);
    expect(seen).toEqual([2, 7]); // drop1 and drop2, by their index in spec.layers
    // All-zero activations before the last dense layer leave only its bias: the same row twice, unlike the plain pass.
    expect(maxAbsDiff(dropped.subarray(0, 10), dropped.subarray(10))).toBe(0);
    expect(maxAbsDiff(plain, dropped)).toBeGreaterThan(1e-3);
    tf.dispose([...weights, x]);
    model.dispose();
  });
});

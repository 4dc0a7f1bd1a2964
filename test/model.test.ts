import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { tf } from '../services/core/tf.js';
import {
  INPUT_SHAPE,
  NUM_CLASSES,
  PIXELS,
  argmaxRows,
  buildModel,
  countParams,
  evaluate,
  getFlatWeights,
  modelSpec,
  predictProbabilities,
  referenceModelSpec,
  setFlatWeights,
  specSize,
  toInputTensor,
} from '../services/core/model.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';

const PARAMS = 317_066;
const REFERENCE = [
  { name: 'conv1/kernel', shape: [5, 5, 1, 32] },
  { name: 'conv1/bias', shape: [32] },
  { name: 'conv2/kernel', shape: [5, 5, 32, 64] },
  { name: 'conv2/bias', shape: [64] },
  { name: 'dense1/kernel', shape: [1024, 256] },
  { name: 'dense1/bias', shape: [256] },
  { name: 'dense2/kernel', shape: [256, 10] },
  { name: 'dense2/bias', shape: [10] },
];

type Model = ReturnType<typeof buildModel>;
let model: Model;
const test = builtinMnistSplit({ testSize: 64, seed: 5 }).test;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = buildModel();
});
afterAll(() => model.dispose());

/** Bitwise equality of two float vectors (fast; toEqual on 317k elements is slow). */
function same(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Offset of a named tensor in the flat weight vector. */
function offsetOf(name: string): number {
  let at = 0;
  for (const t of REFERENCE) {
    if (t.name === name) return at;
    at += t.shape.reduce((a, b) => a * b, 1);
  }
  throw new Error(name);
}

describe('buildModel', () => {
  it('has exactly 317,066 parameters', () => {
    expect(model.countParams()).toBe(PARAMS);
    expect(countParams(model)).toBe(PARAMS);
    expect(getFlatWeights(model).length).toBe(PARAMS);
  });

  it('has the reference layer stack and weight shapes', () => {
    expect(model.layers.map((l) => l.name)).toEqual(['conv1', 'pool1', 'drop1', 'conv2', 'pool2', 'flatten', 'dense1', 'drop2', 'dense2']);
    expect(modelSpec(model)).toEqual(REFERENCE);
    expect(model.inputs[0]!.shape).toEqual([null, ...INPUT_SHAPE]);
    expect(model.outputs[0]!.shape).toEqual([null, NUM_CLASSES]);
    // 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4; 4*4*64 = 1024 feeds dense1
    expect(model.getLayer('flatten').outputShape).toEqual([null, 1024]);
  });

  it('names weights the same however many models were built before', () => {
    const extra = [buildModel(), buildModel()];
    const again = buildModel();
    expect(modelSpec(again)).toEqual(REFERENCE);
    [...extra, again].forEach((m) => m.dispose());
  });

  it('initialises deterministically from its seed, with zero biases', () => {
    const a = buildModel(3);
    const b = buildModel(3);
    const c = buildModel(4);
    const fa = getFlatWeights(a);
    expect(same(getFlatWeights(b), fa)).toBe(true);
    expect(same(getFlatWeights(c), fa)).toBe(false);
    expect(fa.subarray(offsetOf('conv1/bias'), offsetOf('conv1/bias') + 32).every((v) => v === 0)).toBe(true);
    // Glorot uniform: dense1 kernel within sqrt(6 / (1024 + 256))
    const limit = Math.sqrt(6 / (1024 + 256));
    const k = fa.subarray(offsetOf('dense1/kernel'), offsetOf('dense1/bias'));
    expect(k.every((v) => Math.abs(v) <= limit + 1e-7)).toBe(true);
    expect(k.some((v) => v !== 0)).toBe(true);
    [a, b, c].forEach((m) => m.dispose());
  });
});

describe('referenceModelSpec', () => {
  it('equals modelSpec(buildModel()) and is built once', () => {
    const ref = referenceModelSpec();
    expect(ref).toEqual(modelSpec(buildModel()));
    expect(ref).toEqual(REFERENCE);
    expect(referenceModelSpec()).toBe(ref);
    expect(specSize(ref)).toBe(PARAMS);
  });
});

describe('getFlatWeights / setFlatWeights', () => {
  it('round-trips a weight vector exactly, in manifest order', () => {
    const m = buildModel(7);
    const flat = Float32Array.from({ length: PARAMS }, (_, i) => Math.sin(i) * 0.1);
    setFlatWeights(m, flat);
    expect(same(getFlatWeights(m), flat)).toBe(true);
    // the manifest order is the weight order: dense2/bias is the last 10 values
    const bias = m.getLayer('dense2').getWeights()[1]!;
    expect(Array.from(bias.dataSync())).toEqual(Array.from(flat.subarray(PARAMS - 10)));
    m.dispose();
  });

  it('returns a copy, not a view of the model', () => {
    const m = buildModel(8);
    const flat = getFlatWeights(m);
    const first = flat[0];
    flat[0] = 123;
    expect(getFlatWeights(m)[0]).toBe(first);
    m.dispose();
  });

  it('does not alias the vector it was given', () => {
    const m = buildModel(9);
    const flat = new Float32Array(PARAMS).fill(0.01);
    setFlatWeights(m, flat);
    flat.fill(5);
    const after = getFlatWeights(m);
    m.dispose();
    expect(after[0]).toBeCloseTo(0.01, 6);
  });

  it('rejects a vector of the wrong length, leaving the model unchanged', () => {
    const before = getFlatWeights(model);
    expect(() => setFlatWeights(model, new Float32Array(PARAMS - 1))).toThrow(`weight vector has ${PARAMS - 1} values, model needs ${PARAMS}`);
    expect(() => setFlatWeights(model, new Float32Array(PARAMS + 1))).toThrow(/model needs 317066/);
    expect(() => setFlatWeights(model, new Float32Array(0))).toThrow(/has 0 values/);
    expect(same(getFlatWeights(model), before)).toBe(true);
  });

  it('does not leak tensors', () => {
    const m = buildModel(10);
    const flat = getFlatWeights(m);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) setFlatWeights(m, flat);
    getFlatWeights(m);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});

describe('prediction and evaluation', () => {
  it('toInputTensor makes an NHWC batch', () => {
    const t = toInputTensor(test.images.subarray(0, 3 * PIXELS), 3);
    expect(t.shape).toEqual([3, 28, 28, 1]);
    t.dispose();
  });

  it('predictProbabilities gives one probability row per image, each summing to 1', () => {
    const count = 20;
    const probs = predictProbabilities(model, test.images, count);
    expect(probs.length).toBe(count * NUM_CLASSES);
    for (let r = 0; r < count; r++) {
      const row = probs.subarray(r * NUM_CLASSES, (r + 1) * NUM_CLASSES);
      expect(row.every((p) => p >= 0 && p <= 1)).toBe(true);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    }
    // chunking does not change the answer; inference is deterministic (dropout off)
    const chunked = predictProbabilities(model, test.images, count, 3);
    for (let i = 0; i < probs.length; i++) expect(chunked[i]).toBeCloseTo(probs[i]!, 6);
  });

  it('predictProbabilities does not leak tensors', () => {
    predictProbabilities(model, test.images, 4, 2);
    const before = tf.memory().numTensors;
    predictProbabilities(model, test.images, 10, 3);
    evaluate(model, test.images, test.labels.subarray(0, 10), 4);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('argmaxRows picks the largest entry per row, first on ties', () => {
    const probs = new Float32Array(30);
    probs[7] = 0.9;
    probs[10 + 2] = 0.5;
    probs[10 + 9] = 0.5;
    expect(argmaxRows(probs)).toEqual([7, 2, 0]);
    expect(argmaxRows(Float32Array.from([0.1, 0.7, 0.2, 0.3, 0.3, 0.4]), 3)).toEqual([1, 2]);
  });

  it('evaluate returns accuracy in [0,1], finite loss, and agrees with the predictions', () => {
    const res = evaluate(model, test.images, test.labels);
    expect(res.samples).toBe(64);
    expect(res.accuracy).toBeGreaterThanOrEqual(0);
    expect(res.accuracy).toBeLessThanOrEqual(1);
    expect(Number.isFinite(res.loss)).toBe(true);
    expect(res.loss).toBeGreaterThan(0);
    const predicted = argmaxRows(predictProbabilities(model, test.images, 64));
    expect(res.accuracy).toBe(predicted.filter((p, i) => p === test.labels[i]).length / 64);
  });

  it('evaluate scores a constant predictor exactly', () => {
    // All weights zero except dense2/bias: every image gets softmax(bias), so class 3 always wins.
    const m = buildModel();
    const flat = new Float32Array(PARAMS);
    flat[offsetOf('dense2/bias') + 3] = 4;
    setFlatWeights(m, flat);
    const res = evaluate(m, test.images, test.labels, 16);
    m.dispose();
    const threes = test.labels.filter((l) => l === 3).length;
    expect(threes).toBeGreaterThan(0);
    expect(res.accuracy).toBeCloseTo(threes / 64, 10);
    const p3 = Math.exp(4) / (Math.exp(4) + 9);
    const pOther = 1 / (Math.exp(4) + 9);
    const loss = -(threes * Math.log(p3) + (64 - threes) * Math.log(pOther)) / 64;
    expect(res.loss).toBeCloseTo(loss, 4);
  });
});

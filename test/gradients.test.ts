/**
 * edgefl's gradient functions (services/core/gradients.ts), which the training threads use
 * instead of loading tfjs-layers: each one against tfjs-layers' for the same kernel, and the
 * set against every layer kind and activation a spec can have.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { FORWARD_GRADIENTS } from '../services/core/gradients.js';
import { forward, weightSpecs, weightTensors } from '../services/core/forward.js';
import { REFERENCE_CNN, type Activation, type LayerSpec, type ModelSpec } from '../services/core/model-spec.js';
import type { GradConfig, Tensor } from '@tensorflow/tfjs-core';

type Registry = Map<string, GradConfig>;
const registry = () => (globalThis as { _tfGlobals?: Map<string, unknown> })._tfGlobals!.get('gradRegistry') as Registry;

let seed = 11;
const random = (shape: number[], lo = -1, hi = 1) => tf.randomUniform(shape, lo, hi, 'float32', seed++);
const ours = (kernel: string) => FORWARD_GRADIENTS.find((g) => g.kernelName === kernel)!;

/** Gradients of `f` at `xs` with `config` as the gradient of its kernel, the registry otherwise as it is. */
function gradsWith(config: GradConfig, f: (...xs: Tensor[]) => Tensor, xs: Tensor[]): Float32Array[] {
  const reg = registry();
  const previous = reg.get(config.kernelName);
  reg.set(config.kernelName, config);
  try {
    return tf.tidy(() => tf.grads(f)(xs).map((g) => g.dataSync() as Float32Array));
  } finally {
    if (previous) reg.set(config.kernelName, previous);
    else reg.delete(config.kernelName);
  }
}

function expectClose(a: Float32Array[], b: Float32Array[], tolerance = 1e-5): void {
  expect(a.length).toBe(b.length);
  a.forEach((g, i) => {
    expect(g.length).toBe(b[i]!.length);
    const worst = g.reduce((m, v, j) => Math.max(m, Math.abs(v - b[i]![j]!) / Math.max(1, Math.abs(b[i]![j]!))), 0);
    expect(worst, `input ${i}`).toBeLessThan(tolerance);
  });
}

/** A scalar of `y` that weights each element differently, so dy is not uniform. */
const weighted = (y: Tensor) => tf.sum(tf.mul(y, tf.reshape(tf.linspace(-1, 2, y.size), y.shape)));

let layersGradient: (kernel: string) => GradConfig;

beforeAll(async () => {
  await initBackend('cpu');
  // Loads tfjs-layers, whose bundle registers tfjs-core's gradients: the reference here.
  tf.grad((x: Tensor) => tf.sum(x))(tf.ones([1]));
  const snapshot = new Map(registry());
  layersGradient = (kernel) => snapshot.get(kernel)!;
});

describe("edgefl's gradient functions against tfjs-layers'", () => {
  const cases: Array<[string, string, (...xs: Tensor[]) => Tensor, () => Tensor[]]> = [
    ['Add, b broadcast along rows', 'Add', (a, b) => weighted(tf.add(a, b)), () => [random([2, 3, 4]), random([4])]],
    ['Add, a broadcast from [2,1,4]', 'Add', (a, b) => weighted(tf.add(a, b)), () => [random([2, 1, 4]), random([2, 3, 4])]],
    ['Sub', 'Sub', (a, b) => weighted(tf.sub(a, b)), () => [random([3, 1]), random([3, 5])]],
    ['Multiply', 'Multiply', (a, b) => weighted(tf.mul(a, b)), () => [random([2, 3, 4]), random([1, 3, 1])]],
    ['RealDiv', 'RealDiv', (a, b) => weighted(tf.div(a, b)), () => [random([4, 3]), random([3], 0.5, 2)]],
    ['Neg', 'Neg', (x) => weighted(tf.neg(x)), () => [random([5, 2])]],
    ['Log', 'Log', (x) => weighted(tf.log(x)), () => [random([5, 2], 0.1, 3)]],
    ['Square', 'Square', (x) => weighted(tf.square(x)), () => [random([5, 2])]],
    ['Relu', 'Relu', (x) => weighted(tf.relu(x)), () => [random([4, 6])]],
    ['Tanh', 'Tanh', (x) => weighted(tf.tanh(x)), () => [random([4, 6], -3, 3)]],
    ['Sigmoid', 'Sigmoid', (x) => weighted(tf.sigmoid(x)), () => [random([4, 6], -3, 3)]],
    ['Cast', 'Cast', (x) => weighted(tf.engine().runKernel('Cast', { x }, { dtype: 'float32' }) as Tensor), () => [random([3, 3])]],
    ['Reshape', 'Reshape', (x) => weighted(tf.reshape(x, [6, 4])), () => [random([2, 3, 4])]],
    ['ClipByValue, values on both sides', 'ClipByValue', (x) => weighted(tf.clipByValue(x, -0.4, 0.5)), () => [random([6, 5])]],
    ['Sum over one axis', 'Sum', (x) => weighted(tf.sum(x, 1)), () => [random([2, 3, 4])]],
    ['Sum over two axes, kept', 'Sum', (x) => weighted(tf.sum(x, [0, 2], true)), () => [random([2, 3, 4])]],
    ['Sum over all', 'Sum', (x) => tf.mul(tf.sum(x), 3), () => [random([2, 3, 4])]],
    ['Softmax', 'Softmax', (x) => weighted(tf.softmax(x)), () => [random([3, 7], -2, 2)]],
    ['MatMul', 'BatchMatMul', (a, b) => weighted(tf.matMul(a, b)), () => [random([3, 4]), random([4, 5])]],
    ['MatMul, b transposed', 'BatchMatMul', (a, b) => weighted(tf.matMul(a, b, false, true)), () => [random([3, 4]), random([5, 4])]],
    ['MatMul, a transposed', 'BatchMatMul', (a, b) => weighted(tf.matMul(a, b, true, false)), () => [random([4, 3]), random([4, 5])]],
    ['MatMul, both transposed', 'BatchMatMul', (a, b) => weighted(tf.matMul(a, b, true, true)), () => [random([4, 3]), random([5, 4])]],
    ['batched MatMul', 'BatchMatMul', (a, b) => weighted(tf.matMul(a, b)), () => [random([2, 3, 4]), random([2, 4, 5])]],
    ['Conv2D, valid', 'Conv2D', (x, f) => weighted(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'valid')), () => [random([2, 7, 7, 3]), random([3, 3, 3, 4])]],
    ['Conv2D, same, stride 2', 'Conv2D', (x, f) => weighted(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 2, 'same')), () => [random([2, 7, 6, 2]), random([3, 3, 2, 5])]],
    ['MaxPool 2x2', 'MaxPool', (x) => weighted(tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid')), () => [random([2, 6, 6, 3])]],
    ['MaxPool 3x3, stride 1', 'MaxPool', (x) => weighted(tf.maxPool(x as tf.Tensor4D, 3, 1, 'valid')), () => [random([1, 5, 6, 2])]],
  ];
  for (const [name, kernel, f, inputs] of cases) {
    it(name, () => {
      const xs = inputs();
      expectClose(gradsWith(ours(kernel), f, xs), gradsWith(layersGradient(kernel), f, xs));
      tf.dispose(xs);
    });
  }

  it("MatMul with a batch broadcast: a's gradient is summed over the batch (tfjs-layers' leaves it unsummed, so it is checked against a tiled a)", () => {
    const [a, b] = [random([1, 3, 4]), random([2, 4, 5])];
    const broadcast = gradsWith(ours('BatchMatMul'), (x, y) => weighted(tf.matMul(x, y)), [a, b]);
    const tiled = gradsWith(layersGradient('BatchMatMul'), (x, y) => weighted(tf.matMul(tf.tile(x, [2, 1, 1]), y)), [a, b]);
    expectClose(broadcast, tiled);
    tf.dispose([a, b]);
  });

  it('every function is tried above', () => {
    const tried = new Set(cases.map((c) => c[1]));
    expect(FORWARD_GRADIENTS.map((g) => g.kernelName).filter((k) => !tried.has(k))).toEqual([]);
  });
});

// Every activation and layer kind a spec can have: TypeScript fails here when one is added.
const ACTIVATIONS: Record<Activation, true> = { relu: true, softmax: true, linear: true, tanh: true, sigmoid: true };
const KINDS: Record<LayerSpec['kind'], true> = { conv2d: true, maxPooling2d: true, dropout: true, flatten: true, dense: true, scattering: true };

/** Every activation on a conv and on a dense layer, both paddings, a stride; scattering is a first layer only. */
const SPECS: ModelSpec[] = [
  REFERENCE_CNN,
  {
    name: 'every-activation',
    inputShape: [20, 18, 2],
    classes: 4,
    layers: [
      ...(Object.keys(ACTIVATIONS) as Activation[]).map((activation, i): LayerSpec => ({ kind: 'conv2d', name: `c${i}`, filters: 3, kernelSize: 3, strides: i === 1 ? 2 : 1, padding: i % 2 ? 'same' : 'valid', activation })),
      { kind: 'maxPooling2d', name: 'p', poolSize: 2, strides: 1 },
      { kind: 'dropout', name: 'x', rate: 0.3 },
      { kind: 'flatten', name: 'f' },
      ...(Object.keys(ACTIVATIONS) as Activation[]).map((activation, i): LayerSpec => ({ kind: 'dense', name: `d${i}`, units: 5, activation })),
      { kind: 'dense', name: 'out', units: 4, activation: 'softmax' },
    ],
  },
  { name: 'scattering', inputShape: [16, 16, 1], classes: 3, layers: [{ kind: 'scattering', name: 's', J: 2, L: 4 }, { kind: 'flatten', name: 'f' }, { kind: 'dense', name: 'd', units: 3, activation: 'softmax' }] },
];

/** A training thread's loss (parallel-worker.ts) on `spec`: cross-entropy, a dropout mask, a FedProx term. */
function workerLossGrads(spec: ModelSpec): Float32Array[] {
  return tf.tidy(() => {
    const specs = weightSpecs(spec);
    const size = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    const flat = Float32Array.from({ length: size }, (_, i) => Math.sin(i * 1.7) * 0.2);
    const vars = weightTensors(specs, flat).map((t) => tf.variable(t));
    const anchors = vars.map((v) => tf.add(v, 0.01));
    const n = 3;
    const xs = tf.randomUniform([n, ...spec.inputShape], 0, 1, 'float32', 5) as tf.Tensor4D;
    const ys = tf.oneHot(tf.tensor1d([0, 1, 2], 'int32'), spec.classes);
    const dropout = (x: Tensor, layer: number, rate: number) => tf.mul(x, tf.div(tf.floor(tf.add(tf.randomUniform(x.shape, 0, 1, 'float32', 7 + layer), 1 - rate)), 1 - rate));
    const { grads } = tf.variableGrads(() => {
      const probs = forward(spec, vars, xs, dropout);
      const ce = tf.neg(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1)))));
      const prox = vars.reduce<Tensor>((acc, v, i) => tf.add(acc, tf.sum(tf.square(tf.sub(v, anchors[i]!)))), tf.scalar(0));
      return tf.add(tf.div(ce, n), tf.mul(0.05, prox)) as tf.Scalar;
    }, vars);
    const out = vars.map((v) => grads[v.name]!.dataSync() as Float32Array);
    tf.dispose(vars);
    return out;
  });
}

describe('the set covers what training through forward.ts differentiates', () => {
  it('lists every layer kind and activation', () => {
    const kinds = new Set(SPECS.flatMap((s) => s.layers.map((l) => l.kind)));
    expect([...kinds].sort()).toEqual(Object.keys(KINDS).sort());
  });

  it("gives every spec's weight gradients with no other gradient registered, equal to tfjs-layers'", () => {
    const reg = registry();
    const all = new Map(reg);
    for (const spec of SPECS) {
      const reference = workerLossGrads(spec);
      reg.clear();
      for (const g of FORWARD_GRADIENTS) reg.set(g.kernelName, g);
      try {
        expectClose(workerLossGrads(spec), reference, 1e-4);
      } finally {
        reg.clear();
        for (const [k, v] of all) reg.set(k, v);
      }
    }
  });
});

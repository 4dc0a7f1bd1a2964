/**
 * The forward pass of a ModelSpec on tfjs-core ops alone: what serving predicts with and what
 * the training worker threads differentiate, neither of which then needs tfjs-layers (about
 * 13 MiB of RSS and 60 ms of imports in a serving function). Numerically it is the Sequential
 * model buildModel makes from the same spec, up to float error (test/forward.test.ts).
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';
import { slideSize, windowOf, type Activation, type LayerSpec, type ModelSpec } from './model-spec.js';
import { scatteringOutputShape } from './scattering.js';
import { scatter } from './scattering-op.js';

// require, not import: an ESM import of the CommonJS bundle costs a serving cold start tens of ms
// (see tf.ts). The training threads import tfjs-core themselves; both get the one cached instance.
const tf = createRequire(import.meta.url)('@tensorflow/tfjs-core') as typeof Core;
// eslint-disable-next-line @typescript-eslint/no-namespace
declare namespace tf {
  type Tensor = Core.Tensor;
  type Tensor2D = Core.Tensor2D;
  type Tensor4D = Core.Tensor4D;
}

/** One weight tensor: "<layer>/<kernel|bias>" and its shape, in the order the model holds them. */
export interface WeightSpec {
  name: string;
  shape: number[];
}

/**
 * The weight manifest of a spec, computed from its shapes (the same names and shapes as
 * modelSpec(buildModel(seed, spec)), without building a tfjs-layers model).
 */
export function weightSpecs(spec: ModelSpec): WeightSpec[] {
  let [h, w, c] = spec.inputShape;
  let units = 0;
  const out: WeightSpec[] = [];
  for (const layer of spec.layers) {
    switch (layer.kind) {
      case 'conv2d': {
        const win = windowOf(layer);
        out.push({ name: `${layer.name}/kernel`, shape: [layer.kernelSize, layer.kernelSize, c, layer.filters] }, { name: `${layer.name}/bias`, shape: [layer.filters] });
        [h, w, c] = [slideSize(h, win), slideSize(w, win), layer.filters];
        break;
      }
      case 'maxPooling2d': {
        const win = windowOf(layer);
        [h, w] = [slideSize(h, win), slideSize(w, win)];
        break;
      }
      case 'flatten':
        units = h * w * c;
        break;
      case 'dense':
        out.push({ name: `${layer.name}/kernel`, shape: [units || h * w * c, layer.units] }, { name: `${layer.name}/bias`, shape: [layer.units] });
        units = layer.units;
        break;
      case 'scattering':
        [h, w, c] = scatteringOutputShape([h, w, c], layer);
        break;
      case 'dropout':
        break;
    }
  }
  return out;
}

/** The flat weight vector (codec order) as one tensor per WeightSpec. */
export function weightTensors(specs: readonly WeightSpec[], flat: Float32Array): tf.Tensor[] {
  const expected = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  if (flat.length !== expected) throw new Error(`weight vector has ${flat.length} values, the spec needs ${expected}`);
  let at = 0;
  return specs.map((s) => {
    const size = s.shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.subarray(at, at + size), s.shape, 'float32');
    at += size;
    return t;
  });
}

/** Activations tf.fused can apply inside the conv/matmul kernel; the rest run as a separate op. */
type Fusable = 'relu' | 'linear';
const fusable = (a: Activation): a is Fusable => a === 'relu' || a === 'linear';

function activate(x: tf.Tensor, a: Activation): tf.Tensor {
  switch (a) {
    case 'relu':
      return tf.relu(x);
    case 'softmax':
      return tf.softmax(x);
    case 'tanh':
      return tf.tanh(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'linear':
      return x;
  }
}

/** Dropout at training time: layer index (in spec.layers), its rate, and the activation to mask. */
export type DropoutFn = (x: tf.Tensor, layerIndex: number, rate: number) => tf.Tensor;

/**
 * Runs `input` (NHWC) through the spec's layers with `weights` (one tensor per WeightSpec, in
 * order). Dropout is the identity unless `dropout` is given (training). Call inside tf.tidy.
 */
export function forward(spec: ModelSpec, weights: readonly tf.Tensor[], input: tf.Tensor4D, dropout?: DropoutFn): tf.Tensor2D {
  let x: tf.Tensor = input;
  let w = 0;
  spec.layers.forEach((layer: LayerSpec, i) => {
    switch (layer.kind) {
      case 'conv2d': {
        const [filter, bias] = [weights[w++] as tf.Tensor4D, weights[w++]!];
        const s = layer.strides ?? 1;
        const fused = fusable(layer.activation) ? layer.activation : 'linear';
        x = tf.fused.conv2d({ x: x as tf.Tensor4D, filter, strides: s, pad: layer.padding, bias, activation: fused });
        if (!fusable(layer.activation)) x = activate(x, layer.activation);
        break;
      }
      case 'maxPooling2d': {
        const s = layer.strides ?? layer.poolSize;
        x = tf.maxPool(x as tf.Tensor4D, layer.poolSize, s, 'valid');
        break;
      }
      case 'scattering':
        x = scatter(x as tf.Tensor4D, layer);
        break;
      case 'dropout':
        if (dropout && layer.rate > 0) x = dropout(x, i, layer.rate);
        break;
      case 'flatten':
        x = tf.reshape(x, [x.shape[0]!, -1]);
        break;
      case 'dense': {
        const [kernel, bias] = [weights[w++] as tf.Tensor2D, weights[w++]!];
        const fused = fusable(layer.activation) ? layer.activation : 'linear';
        x = tf.fused.matMul({ a: x as tf.Tensor2D, b: kernel, bias, activation: fused });
        if (!fusable(layer.activation)) x = activate(x, layer.activation);
        break;
      }
    }
  });
  return x as tf.Tensor2D;
}

/**
 * Class probabilities of `count` images (flat [0,1] pixels, NHWC), in chunks so a huge request
 * never builds one giant activation (the wasm heap never shrinks: the largest chunk sets the
 * serving function's memory for good).
 */
export function predictWithSpec(spec: ModelSpec, weights: readonly tf.Tensor[], pixels: Float32Array, count: number, chunk = 256): Float32Array {
  const [h, w, c] = spec.inputShape;
  const size = h * w * c;
  const out = new Float32Array(count * spec.classes);
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const probs = tf.tidy(() => forward(spec, weights, tf.tensor4d(pixels.subarray(start * size, (start + n) * size), [n, h, w, c])));
    out.set(probs.dataSync() as Float32Array, start * spec.classes);
    probs.dispose();
  }
  return out;
}

/** A spec with its weights, ready to predict: what a serving function holds instead of a tfjs-layers model. */
export class SpecModel {
  readonly weightSpecs: readonly WeightSpec[];
  private weights: tf.Tensor[];

  constructor(readonly spec: ModelSpec, flat: Float32Array) {
    this.weightSpecs = weightSpecs(spec);
    this.weights = weightTensors(this.weightSpecs, flat);
  }

  /** Replaces the weights in place (a standby model taking a new version). */
  setWeights(flat: Float32Array): void {
    const next = weightTensors(this.weightSpecs, flat);
    tf.dispose(this.weights);
    this.weights = next;
  }

  /** count × classes probabilities, row-major. */
  predict(pixels: Float32Array, count: number, chunk?: number): Float32Array {
    return predictWithSpec(this.spec, this.weights, pixels, count, chunk);
  }

  dispose(): void {
    tf.dispose(this.weights);
  }
}

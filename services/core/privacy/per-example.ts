/**
 * Per-example gradients of a Sequential CNN without one backward pass per example.
 *
 * One batched backward pass yields dL/dz for every layer's pre-activation z (by adding a
 * zero "probe" tensor to z and differentiating with respect to it; the loss is a sum over
 * examples, so row i of dL/dz depends on example i alone). A layer's per-example weight
 * gradient then follows from its input a:
 *   Dense:  dW_i = a_i ⊗ dz_i, so ‖dW_i‖² = ‖a_i‖²·‖dz_i‖² and the clipped sum is one
 *           matmul aᵀ·(c ⊙ dz): no per-example tensor is ever built.
 *   Conv2D: dW_i = P_iᵀ·dZ_i with P_i the im2col patch matrix of a_i (positions × taps),
 *           a batched matmul whose result is the per-example gradient (small for a conv:
 *           taps × filters).
 * im2col is a JS pass over the layer input, so this runs on any backend; the wasm
 * training kernels do the batched backward pass.
 */
import { tf, type tfl } from '../tf.js';
import { classesFor, inputShapeFor, type Activation, type Op } from './ops.js';
export { opsOf } from './ops.js';

export type { Op } from './ops.js';

function activate(z: tf.Tensor, a: Activation): tf.Tensor {
  if (a === 'relu') return tf.relu(z);
  if (a === 'softmax') return tf.softmax(z);
  if (a === 'tanh') return tf.tanh(z);
  return a === 'sigmoid' ? tf.sigmoid(z) : z;
}

type ConvOp = Extract<Op, { kind: 'conv' }>;

/** Output size and leading padding of a conv along one axis, as TensorFlow pads ('same': ceil(in/s), the odd pixel at the end). */
export function convAxis(size: number, k: number, stride: number, padding: 'valid' | 'same'): { out: number; pad: number } {
  if (padding === 'valid') return { out: Math.floor((size - k) / stride) + 1, pad: 0 };
  const out = Math.ceil(size / stride);
  return { out, pad: Math.floor(Math.max((out - 1) * stride + k - size, 0) / 2) };
}

/** A conv's window: kernel, strides and padding (stride 1, valid unless given). */
export interface ConvWindow {
  kh: number;
  kw: number;
  strides?: readonly [number, number];
  padding?: 'valid' | 'same';
}

/** What one weighted layer contributes: its input and dL/dz for each example. */
export interface LayerTrace {
  op: Extract<Op, { kind: 'conv' | 'dense' }>;
  input: tf.Tensor;
  dz: tf.Tensor;
}

export interface BatchTrace {
  layers: LayerTrace[];
  lossSum: number;
  correct: number;
}

/**
 * One forward and one backward pass over the batch. Dropout is active when `dropoutSeed`
 * is given (each example gets its own mask, so privacy is unaffected). The caller owns
 * the returned tensors (dispose with `disposeTrace`).
 */
export function traceBatch(ops: readonly Op[], pixels: Float32Array, labels: Int32Array, dropoutSeed?: number): BatchTrace {
  const n = labels.length;
  const weighted = ops.filter((o): o is LayerTrace['op'] => o.kind === 'conv' || o.kind === 'dense');
  const inputs: tf.Tensor[] = [];
  let lossSum = 0;
  let correct = 0;
  const xs = tf.tensor4d(pixels, [n, ...inputShapeFor(ops)]);
  const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), classesFor(ops));
  // Probe shapes come from a forward pass: z has the layer output's shape.
  const probes = outputShapes(ops, n).map((s) => tf.zeros(s));
  try {
    const dzs = tf.grads((...probe: tf.Tensor[]) => {
      let h: tf.Tensor = xs;
      let w = 0;
      let dropouts = 0;
      for (const op of ops) {
        if (op.kind === 'conv' || op.kind === 'dense') {
          // A clone, so the trace owns a handle independent of xs (disposed below).
          inputs.push(tf.keep(tf.clone(h)));
          const z = op.kind === 'conv' ? tf.conv2d(h as tf.Tensor4D, op.kernel as tf.Tensor4D, op.strides, op.padding) : tf.matMul(h as tf.Tensor2D, op.kernel as tf.Tensor2D);
          h = activate(tf.add(tf.add(z, op.bias), probe[w++]!), op.activation);
        } else if (op.kind === 'pool') h = tf.maxPool(h as tf.Tensor4D, op.size, op.strides, 'valid');
        else if (op.kind === 'flatten') h = tf.reshape(h, [n, -1]);
        else if (op.kind === 'scatter') throw new Error('DP-SGD traces the layers after a scattering layer (fixed-features.ts), not the layer itself');
        else if (dropoutSeed !== undefined && op.rate > 0) h = tf.dropout(h, op.rate, undefined, dropoutSeed + 7919 * dropouts++);
      }
      const probs = h;
      const perExample = tf.neg(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1))), 1));
      correct = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), tf.argMax(ys, 1)), 'int32')).dataSync()[0]!;
      const loss = tf.sum(perExample);
      lossSum = loss.dataSync()[0]!;
      return loss;
    })(probes);
    return { layers: weighted.map((op, i) => ({ op, input: inputs[i]!, dz: dzs[i]! })), lossSum, correct };
  } finally {
    tf.dispose([xs, ys, ...probes]);
  }
}

function outputShapes(ops: readonly Op[], n: number): number[][] {
  return tf.tidy(() => {
    let shape: number[] = [n, ...inputShapeFor(ops)];
    const out: number[][] = [];
    for (const op of ops) {
      if (op.kind === 'conv') shape = [n, convAxis(shape[1]!, op.kh, op.strides[0], op.padding).out, convAxis(shape[2]!, op.kw, op.strides[1], op.padding).out, op.kernel.shape[3]!];
      else if (op.kind === 'dense') shape = [n, op.kernel.shape[1]!];
      else if (op.kind === 'pool') shape = [n, Math.floor((shape[1]! - op.size[0]) / op.strides[0]) + 1, Math.floor((shape[2]! - op.size[1]) / op.strides[1]) + 1, shape[3]!];
      else if (op.kind === 'flatten') shape = [n, shape.slice(1).reduce((a, b) => a * b, 1)];
      if (op.kind === 'conv' || op.kind === 'dense') out.push(shape);
    }
    return out;
  });
}

export function disposeTrace(t: BatchTrace): void {
  tf.dispose(t.layers.flatMap((l) => [l.input, l.dz]));
}

/**
 * im2col of a convolution as rows [n, outH·outW, kh·kw·C], taps ordered like the kernel
 * (kh, kw, C); taps in the padding stay zero. A JS pass over one read of x: a kernel row of
 * kw·C values is contiguous in NHWC, so each patch is kh block copies (per-tap tf.slice +
 * concat was 3-4x slower on the wasm backend).
 */
export function im2col(x: Float32Array, [n, h, w, c]: readonly number[], win: ConvWindow): Float32Array {
  const { kh, kw, strides = [1, 1], padding = 'valid' } = win;
  const rows = convAxis(h!, kh, strides[0], padding);
  const cols = convAxis(w!, kw, strides[1], padding);
  const out = new Float32Array(n! * rows.out * cols.out * kh * kw * c!);
  const run = kw * c!;
  let at = 0;
  for (let b = 0; b < n!; b++)
    for (let i = 0; i < rows.out; i++)
      for (let j = 0; j < cols.out; j++) {
        const left = j * strides[1] - cols.pad;
        const [from, to] = [Math.max(0, -left), Math.min(kw, w! - left)];
        for (let di = 0; di < kh; di++, at += run) {
          const r = i * strides[0] + di - rows.pad;
          if (r < 0 || r >= h! || from >= to) continue;
          const src = ((b * h! + r) * w! + left) * c!;
          out.set(x.subarray(src + from * c!, src + to * c!), at + from * c!);
        }
      }
  return out;
}

/** One conv layer's per-example gradients, held in JS: dW[i] in kernel layout, db[i] per filter. */
export interface ConvPerExample {
  dW: Float32Array[];
  db: Float32Array[];
}

/**
 * dW_i = P_iᵀ·dZ_i as one plain 2-D matmul per example: on wasm that is an XNNPACK call
 * (~6x faster than the stock batched BatchMatMul, which falls to a scalar loop for
 * batch > 1). db_i is dZ_i summed over positions.
 */
function convPerExample(l: LayerTrace): ConvPerExample {
  const op = l.op as ConvOp;
  const { kh, kw } = op;
  const [n, oh, ow, f] = l.dz.shape as [number, number, number, number];
  const pos = oh * ow;
  const taps = kh * kw * l.input.shape[3]!;
  const dz = l.dz.dataSync() as Float32Array;
  const out: ConvPerExample = { dW: [], db: [] };
  const few = l.input.shape[3]! <= FEW_INPUT_CHANNELS;
  const all = few ? depthwisePerExample(l.input as tf.Tensor4D, l.dz as tf.Tensor4D, op) : undefined;
  const cols = few ? undefined : im2col(l.input.dataSync() as Float32Array, l.input.shape, op);
  for (let i = 0; i < n; i++) {
    const dzi = dz.subarray(i * pos * f, (i + 1) * pos * f);
    if (all) out.dW.push(all.subarray(i * taps * f, (i + 1) * taps * f));
    else {
      const g = tf.tidy(() => tf.matMul(tf.tensor2d(cols!.subarray(i * pos * taps, (i + 1) * pos * taps), [pos, taps]), tf.tensor2d(dzi, [pos, f]), true, false));
      out.dW.push(g.dataSync() as Float32Array);
      g.dispose();
    }
    const db = new Float32Array(f);
    for (let p = 0; p < pos; p++) for (let o = 0; o < f; o++) db[o]! += dzi[p * f + o]!;
    out.db.push(db);
  }
  return out;
}

/** Up to this many input channels, one depthwise convolution beats a matmul per example (conv1: 4x). */
const FEW_INPUT_CHANNELS = 4;

/**
 * Every example's dW at once, as ONE depthwise convolution: with the batch moved into the
 * channels (x as [C, H, W, n]) and dZ as the filter ([oh, ow, n, F]), channel (c, i) convolved
 * with example i's dZ is exactly dW_i[·, ·, c, ·]. Cheap when C is small; with many input
 * channels and a large dZ window (conv2) XNNPACK's depthwise path is slower than the matmuls.
 * A strided layer's dZ taps sit `stride` apart in x: the filter is dilated by the stride, and x
 * is padded as the forward pass padded it (the trailing pad only makes room; outputs past the
 * kernel are cropped). Returns [n, kh·kw·C·F] in kernel layout.
 */
function depthwisePerExample(x: tf.Tensor4D, dz: tf.Tensor4D, win: ConvWindow): Float32Array {
  const t = tf.tidy(() => {
    const { kh, kw, strides = [1, 1], padding = 'valid' } = win;
    const [n, h, w, c] = x.shape;
    const [, oh, ow, f] = dz.shape;
    const top = convAxis(h, kh, strides[0], padding).pad;
    const left = convAxis(w, kw, strides[1], padding).pad;
    const bottom = Math.max(0, (oh - 1) * strides[0] + kh - h - top);
    const right = Math.max(0, (ow - 1) * strides[1] + kw - w - left);
    const padded = top + bottom + left + right > 0 ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x;
    const dilations: [number, number] = [strides[0], strides[1]];
    const full = tf.depthwiseConv2d(tf.transpose(padded, [3, 1, 2, 0]), tf.transpose(dz, [1, 2, 0, 3]), 1, 'valid', 'NHWC', dilations);
    const out = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [c, kh, kw, n * f]);
    return tf.transpose(tf.reshape(out, [c, kh, kw, n, f]), [3, 1, 2, 0, 4]);
  });
  const data = t.dataSync() as Float32Array;
  t.dispose();
  return data;
}

/** Per-example conv gradients, computed once and shared by the norms and the clipped sum. */
export function convGradients(trace: BatchTrace): Map<LayerTrace, ConvPerExample> {
  return new Map(trace.layers.filter((l) => l.op.kind === 'conv').map((l) => [l, convPerExample(l)]));
}

function squaredNorm(v: Float32Array): number {
  let s = 0;
  for (let j = 0; j < v.length; j++) s += v[j]! * v[j]!;
  return s;
}

/** ‖per-example gradient‖² over every weighted layer (Dense by the outer-product identity). */
export function perExampleSquaredNorms(trace: BatchTrace, conv: Map<LayerTrace, ConvPerExample>): Float64Array {
  const n = trace.layers[0]!.dz.shape[0]!;
  const total = new Float64Array(n);
  for (const l of trace.layers) {
    if (l.op.kind === 'dense') {
      const part = tf.tidy(() => {
        const dz2 = tf.sum(tf.square(l.dz), 1);
        return tf.add(tf.mul(tf.sum(tf.square(l.input), 1), dz2), dz2);
      });
      part.dataSync().forEach((v, i) => (total[i]! += v));
      part.dispose();
    } else {
      const g = conv.get(l)!;
      for (let i = 0; i < n; i++) total[i]! += squaredNorm(g.dW[i]!) + squaredNorm(g.db[i]!);
    }
  }
  return total;
}

function weightedSum(parts: readonly Float32Array[], factors: ArrayLike<number>): Float32Array {
  const out = new Float32Array(parts[0]!.length);
  parts.forEach((p, i) => {
    const c = factors[i]!;
    if (c !== 0) for (let j = 0; j < p.length; j++) out[j]! += c * p[j]!;
  });
  return out;
}

/**
 * Σ_i c_i·g_i for each weight tensor, in the model's trainable-weight order (kernel, bias
 * per layer). `factors` has one entry per example.
 */
export function weightedGradientSum(trace: BatchTrace, conv: Map<LayerTrace, ConvPerExample>, factors: ArrayLike<number>): tf.Tensor[] {
  return trace.layers.flatMap((l) => {
    if (l.op.kind === 'dense') {
      return tf.tidy(() => {
        const scaled = tf.mul(l.dz, tf.expandDims(tf.tensor1d(Float32Array.from(factors)), 1));
        return [tf.matMul(l.input as tf.Tensor2D, scaled as tf.Tensor2D, true, false), tf.sum(scaled, 0)];
      });
    }
    const g = conv.get(l)!;
    return [tf.tensor(weightedSum(g.dW, factors), l.op.kernel.shape), tf.tensor1d(weightedSum(g.db, factors))];
  });
}

/** Every example's full gradient as one flat vector (model weight order); for tests and audits only. */
export function materializePerExample(trace: BatchTrace): Float32Array[] {
  const n = trace.layers[0]!.dz.shape[0]!;
  const conv = convGradients(trace);
  return Array.from({ length: n }, (_, i) => {
    const parts = weightedGradientSum(trace, conv, Array.from({ length: n }, (_, k) => (k === i ? 1 : 0)));
    const flat = tf.tidy(() => tf.concat(parts.map((p) => tf.reshape(p, [-1]))));
    const out = flat.dataSync() as Float32Array;
    tf.dispose([flat, ...parts]);
    return out;
  });
}

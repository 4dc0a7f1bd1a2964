/**
 * Gradient functions for the kernels that training through forward.ts differentiates, written
 * here from the derivatives. tfjs-core's CommonJS build registers no gradients, and tfjs-layers'
 * bundle (which does) costs each training thread about 10 MiB of V8 heap for a model it never
 * builds. A training thread registers these instead (parallel-worker.ts); the main thread, which
 * builds tfjs-layers models anyway, keeps tfjs-layers' (tf.ts). test/gradients.test.ts checks
 * every function against tfjs-layers' and that these cover every layer kind and activation.
 *
 * With a tape recording, tf.fused ops with a non-linear activation run unfused (Conv2D or
 * BatchMatMul, Add, then the activation), so these are plain kernels' gradients.
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';

// require, as forward.ts does: the one CommonJS tfjs-core instance every module shares.
const tf = createRequire(import.meta.url)('@tensorflow/tfjs-core') as typeof Core;
type Tensor = Core.Tensor;
type GradConfig = Core.GradConfig;

/** `g` summed over the axes along which `shape` was broadcast to g's shape, in `shape` (g itself where nothing was). */
function unbroadcast(g: Tensor, shape: number[]): Tensor {
  if (tf.util.arraysEqual(g.shape, shape)) return g;
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  return tf.reshape(axes.length > 0 ? tf.sum(g, axes) : g, shape);
}

/** A binary kernel's gradient from d(out)/da and d(out)/db at full (broadcast) shape. */
function binary(kernelName: string, da: (dy: Tensor, a: Tensor, b: Tensor) => Tensor, db: (dy: Tensor, a: Tensor, b: Tensor) => Tensor): GradConfig {
  return {
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [Tensor, Tensor];
      return { a: () => unbroadcast(da(dy as Tensor, a, b), a.shape), b: () => unbroadcast(db(dy as Tensor, a, b), b.shape) };
    },
  };
}

/** A unary kernel's gradient from its input x. */
function fromInput(kernelName: string, dx: (dy: Tensor, x: Tensor) => Tensor): GradConfig {
  return { kernelName, inputsToSave: ['x'], gradFunc: (dy, saved) => ({ x: () => dx(dy as Tensor, saved[0] as Tensor) }) };
}

/** A unary kernel's gradient from its output y. */
function fromOutput(kernelName: string, dx: (dy: Tensor, y: Tensor) => Tensor): GradConfig {
  return { kernelName, outputsToSave: [true], gradFunc: (dy, saved) => ({ x: () => dx(dy as Tensor, saved[0] as Tensor) }) };
}

const add = binary('Add', (dy) => dy, (dy) => dy);
const sub = binary('Sub', (dy) => dy, (dy) => tf.neg(dy));
const multiply = binary('Multiply', (dy, _a, b) => tf.mul(dy, tf.cast(b, 'float32')), (dy, a) => tf.mul(dy, tf.cast(a, 'float32')));
const realDiv = binary(
  'RealDiv',
  (dy, _a, b) => tf.div(dy, tf.cast(b, 'float32')),
  // d(a/b)/db = -a/b²
  (dy, a, b) => tf.neg(tf.div(tf.mul(dy, tf.cast(a, 'float32')), tf.square(tf.cast(b, 'float32')))),
);

const neg: GradConfig = { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(dy as Tensor) }) };
const log = fromInput('Log', (dy, x) => tf.div(dy, tf.cast(x, 'float32')));
const square = fromInput('Square', (dy, x) => tf.mul(dy, tf.mul(tf.cast(x, 'float32'), 2)));
// The subgradient at 0 is 0, as tfjs has it.
const relu = fromInput('Relu', (dy, x) => tf.mul(dy, tf.cast(tf.step(x), 'float32')));
// In terms of the output: tanh' = 1 − y², σ' = y(1 − y).
const tanh = fromOutput('Tanh', (dy, y) => tf.mul(dy, tf.sub(1, tf.square(y))));
const sigmoid = fromOutput('Sigmoid', (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(1, y))));

const cast: GradConfig = { kernelName: 'Cast', gradFunc: (dy) => ({ x: () => (dy as Tensor).clone() }) };

const reshape: GradConfig = {
  kernelName: 'Reshape',
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as Tensor, (saved[0] as Tensor).shape) }),
};

/** Passes the gradient where min ≤ x ≤ max, zero where the value was clipped. */
const clipByValue: GradConfig = {
  kernelName: 'ClipByValue',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [Tensor];
    const { clipValueMin, clipValueMax } = attrs as unknown as Core.ClipByValueAttrs;
    return { x: () => tf.where(tf.logicalAnd(tf.greaterEqual(x, clipValueMin), tf.lessEqual(x, clipValueMax)), dy as Tensor, tf.zerosLike(dy as Tensor)) };
  },
};

/** Every element of x gets the gradient of the sum it went into. */
const sum: GradConfig = {
  kernelName: 'Sum',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [Tensor];
    const { axis, keepDims } = attrs as unknown as Core.SumAttrs;
    const g = dy as Tensor;
    const kept = keepDims ? g.shape : tf.backend_util.expandShapeToKeepDim(g.shape, tf.util.parseAxisParam(axis, x.shape));
    return { x: () => tf.mul(tf.reshape(g, kept), tf.ones(x.shape, 'float32')) };
  },
};

/** y = softmax(logits) along `dim`: dlogits = y·(dy − Σ dy·y). */
const softmax: GradConfig = {
  kernelName: 'Softmax',
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [y] = saved as [Tensor];
    const { dim } = attrs as unknown as Core.SoftmaxAttrs;
    return { logits: () => tf.mul(y, tf.sub(dy as Tensor, tf.sum(tf.mul(dy as Tensor, y), [dim], true))) };
  },
};

/**
 * y = op(a)·op(b), op a transpose or not: each input's gradient is dy multiplied by the other
 * input, in the order and orientation that gives the input's own shape.
 */
const batchMatMul: GradConfig = {
  kernelName: 'BatchMatMul',
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [Tensor, Tensor];
    const { transposeA, transposeB } = attrs as unknown as Core.BatchMatMulAttrs;
    const g = dy as Tensor;
    const [da, db] = !transposeA
      ? !transposeB
        ? [() => tf.matMul(g, b, false, true), () => tf.matMul(a, g, true, false)]
        : [() => tf.matMul(g, b, false, false), () => tf.matMul(g, a, true, false)]
      : !transposeB
        ? [() => tf.matMul(b, g, false, true), () => tf.matMul(a, g, false, false)]
        : [() => tf.matMul(b, g, true, true), () => tf.matMul(g, a, true, true)];
    // Batch dimensions broadcast in the forward product are summed back.
    return { a: () => unbroadcast(da(), a.shape), b: () => unbroadcast(db(), b.shape) };
  },
};

/** NHWC only, no dilation: what forward.ts's conv2d layers make. */
const conv2d: GradConfig = {
  kernelName: 'Conv2D',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [Tensor, Tensor];
    const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as unknown as Core.Conv2DAttrs;
    if (dataFormat !== 'NHWC' || !tf.backend_util.tupleValuesAreOne(dilations ?? 1)) throw new Error(`Conv2D gradient: only NHWC without dilation (got ${dataFormat}, dilations ${String(dilations)})`);
    const common = { strides, pad, dataFormat, dimRoundingMode };
    return {
      x: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: dy as Tensor, filter }, { ...common, inputShape: x.shape } as unknown as Core.NamedAttrMap) as Tensor,
      filter: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dy as Tensor }, { ...common, filterShape: filter.shape } as unknown as Core.NamedAttrMap) as Tensor,
    };
  },
};

/** The gradient goes to the position each window's maximum came from. */
const maxPool: GradConfig = {
  kernelName: 'MaxPool',
  inputsToSave: ['x'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, y] = saved as [Tensor, Tensor];
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as Core.MaxPoolAttrs;
    return { x: () => tf.engine().runKernel('MaxPoolGrad', { dy: dy as Tensor, input: x, output: y }, { filterSize, strides, pad, dimRoundingMode } as unknown as Core.NamedAttrMap) as Tensor };
  },
};

export const FORWARD_GRADIENTS: readonly GradConfig[] = [add, sub, multiply, realDiv, neg, log, square, relu, tanh, sigmoid, cast, reshape, clipByValue, sum, softmax, batchMatMul, conv2d, maxPool];

/** Registers FORWARD_GRADIENTS for the kernels that have none yet (tfjs-layers', once loaded, are left alone). */
export function registerForwardGradients(): void {
  for (const config of FORWARD_GRADIENTS) if (!tf.getGradient(config.kernelName)) tf.registerGradient(config);
}

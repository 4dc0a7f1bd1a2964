/**
 * Training kernels edgefl registers for the wasm backend. Stock tfjs-backend-wasm 4.22
 * ships no Conv2DBackpropFilter (so a CNN cannot train on it at all) and a scalar
 * Conv2DBackpropInput; both are re-expressed here as XNNPACK convolutions.
 */
import {
  backend_util,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  getKernel,
  registerKernel,
  unregisterKernel,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { filterGradient, geometryOf, inputGradient } from './wasm-conv-grad.js';
import { Scratch } from './wasm-ops.js';

type Layout = 'channelsFirst' | 'channelsLast';

const TO_NHWC = [0, 2, 3, 1];
const TO_NCHW = [0, 3, 1, 2];

/** Runs `body` with a Scratch and frees every intermediate except what it returns, even on throw. */
function withScratch(backend: BackendWasm, body: (s: Scratch) => TensorInfo): TensorInfo {
  const s = new Scratch(backend);
  let out: TensorInfo | undefined;
  try {
    out = body(s);
    return out;
  } finally {
    s.release(out);
  }
}

/** The XNNPACK conv only takes NHWC, so NCHW callers pay two transposes. */
function toNhwc(s: Scratch, t: TensorInfo, layout: Layout): TensorInfo {
  return layout === 'channelsFirst' ? s.transpose(t, TO_NHWC) : t;
}

type Shape4 = [number, number, number, number];

const conv2dBackpropFilter: KernelFunc = ({ inputs, attrs, backend }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs;
  const layout = backend_util.convertConv2DDataFormat(dataFormat);
  const info = backend_util.computeConv2DInfo(x.shape as Shape4, filterShape, strides, 1, pad, dimRoundingMode, false, layout);
  return withScratch(backend as BackendWasm, (s) => filterGradient(s, toNhwc(s, x, layout), toNhwc(s, dy, layout), geometryOf(info)));
};

const conv2dBackpropInput: KernelFunc = ({ inputs, attrs, backend }) => {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Conv2DBackpropInputAttrs;
  const layout = backend_util.convertConv2DDataFormat(dataFormat);
  const info = backend_util.computeConv2DInfo(inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode, false, layout);
  return withScratch(backend as BackendWasm, (s) => {
    const dx = inputGradient(s, toNhwc(s, dy, layout), filter, geometryOf(info));
    return layout === 'channelsFirst' ? s.transpose(dx, TO_NCHW) : dx;
  });
};

export const WASM_TRAINING_KERNELS: readonly KernelConfig[] = [
  { kernelName: Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: conv2dBackpropFilter },
  { kernelName: Conv2DBackpropInput, backendName: 'wasm', kernelFunc: conv2dBackpropInput },
];

/**
 * Installs edgefl's kernels over (or beside) the stock ones. Idempotent, because both
 * the backend loader and tests call it; a stock kernel of the same name is replaced
 * since registerKernel refuses duplicates.
 */
export function registerWasmTrainingKernels(): void {
  for (const config of WASM_TRAINING_KERNELS) {
    const existing = getKernel(config.kernelName, 'wasm');
    if (existing?.kernelFunc === config.kernelFunc) continue;
    if (existing) unregisterKernel(config.kernelName, 'wasm');
    registerKernel(config);
  }
}

/**
 * Training kernels edgefl registers for the wasm backend. Stock tfjs-backend-wasm 4.22
 * ships no Conv2DBackpropFilter (so a CNN cannot train on it at all) and a scalar
 * Conv2DBackpropInput; both are re-expressed here as XNNPACK convolutions. MaxPoolGrad
 * transposed BatchMatMul and leading-axes Sum, which dominated a training step after
 * that, are replaced too.
 */
import {
  backend_util,
  BatchMatMul,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  getKernel,
  MaxPoolGrad,
  registerKernel,
  Sum,
  unregisterKernel,
  type BatchMatMulAttrs,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { filterGradient, geometryOf, inputGradient, type ConvGeometry } from './conv-grad.js';
import { filterGradientGemm, inputGradientGemm } from './im2col.js';
import { Scratch } from './ops.js';
import { maxPoolGrad } from './pool-grad.js';
import { sumVia } from './reduce.js';

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

export type ConvGradForm = 'auto' | 'conv' | 'gemm';
/** Which formulation the conv gradients use; 'auto' picks per shape. Tests force each. */
export const convGradForm: { current: ConvGradForm } = { current: 'auto' };

/**
 * The conv form of dW packs all of dy as an XNNPACK conv filter, which costs ~10 ns per
 * element; the GEMM form instead writes a patch matrix of filter-size x positions in JS
 * (~2 ns each) and packs dy as matmul weights (~3 ns). Few filter taps favour the GEMM.
 * The ratio is where the two measured equal on this project's shapes (2-core x86, SIMD).
 */
const FILTER_GEMM_RATIO = 3.5;
function gemmForFilter(g: ConvGeometry): boolean {
  if (convGradForm.current !== 'auto') return convGradForm.current === 'gemm';
  return g.filterH * g.filterW * g.inC < FILTER_GEMM_RATIO * g.outC;
}

/**
 * The conv form of dx computes every input pixel from a full filter window, so it wastes
 * the share of multiplies that fall on padding and stride holes: in*in/(out*out) for a
 * 'valid' conv. The GEMM form does only useful ones plus a JS scatter of the patches,
 * which at equal sizes ('same', stride 1) makes it ~2x slower; hence the margin.
 */
const INPUT_GEMM_WASTE = 1.3;
function gemmForInput(g: ConvGeometry): boolean {
  if (convGradForm.current !== 'auto') return convGradForm.current === 'gemm';
  return g.inH * g.inW > INPUT_GEMM_WASTE * g.outH * g.outW;
}

const conv2dBackpropFilter: KernelFunc = ({ inputs, attrs, backend }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as Conv2DBackpropFilterAttrs;
  const layout = backend_util.convertConv2DDataFormat(dataFormat);
  const info = backend_util.computeConv2DInfo(x.shape as Shape4, filterShape, strides, 1, pad, dimRoundingMode, false, layout);
  return withScratch(backend as BackendWasm, (s) => {
    const g = geometryOf(info);
    return (gemmForFilter(g) ? filterGradientGemm : filterGradient)(s, toNhwc(s, x, layout), toNhwc(s, dy, layout), g);
  });
};

const conv2dBackpropInput: KernelFunc = ({ inputs, attrs, backend }) => {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as Conv2DBackpropInputAttrs;
  const layout = backend_util.convertConv2DDataFormat(dataFormat);
  const info = backend_util.computeConv2DInfo(inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode, false, layout);
  return withScratch(backend as BackendWasm, (s) => {
    const g = geometryOf(info);
    const dx = (gemmForInput(g) ? inputGradientGemm : inputGradient)(s, toNhwc(s, dy, layout), filter, g);
    return layout === 'channelsFirst' ? s.transpose(dx, TO_NCHW) : dx;
  });
};

/**
 * XNNPACK serves BatchMatMul only for untransposed operands; transposed ones (both
 * Dense gradients) fall to a scalar loop 10x slower than transposing first. Which
 * operand to transpose matters too: XNNPACK re-packs the right operand on every call,
 * and a wasm Transpose of a big power-of-two matrix thrashes the cache (3 ms for the
 * 1024x256 Dense kernel), so for A.B^T with a big B it computes (B.A^T)^T instead.
 */
function batchMatMulVia(stock: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const attrs = args.attrs as unknown as BatchMatMulAttrs;
    if (!attrs.transposeA && !attrs.transposeB) return stock(args);
    const plain = (s: Scratch, left: TensorInfo, right: TensorInfo) =>
      s.track(stock({ inputs: { a: left, b: right }, attrs: { ...attrs, transposeA: false, transposeB: false } as unknown as NamedAttrMap, backend: args.backend }) as TensorInfo);
    return withScratch(args.backend as BackendWasm, (s) => {
      if (a.shape.length === 2 && b.shape.length === 2 && attrs.transposeB && swappedIsCheaper(a, b, attrs.transposeA)) {
        const left = attrs.transposeA ? a : s.transpose(a, [1, 0]);
        return s.transpose(plain(s, b, left), [1, 0]);
      }
      const left = attrs.transposeA ? s.transpose(a, swapLastTwo(a.shape.length)) : a;
      const right = attrs.transposeB ? s.transpose(b, swapLastTwo(b.shape.length)) : b;
      return plain(s, left, right);
    });
  };
}

/** Elements moved (transposed or packed) by A'.B^T directly versus as (B.A')^T, A' = A or A^T. */
function swappedIsCheaper(a: TensorInfo, b: TensorInfo, transposeA: boolean): boolean {
  const sizeA = a.shape[0]! * a.shape[1]!;
  const sizeB = b.shape[0]! * b.shape[1]!;
  const sizeC = (transposeA ? a.shape[1]! : a.shape[0]!) * b.shape[0]!;
  const direct = 2 * sizeB + (transposeA ? sizeA : 0);
  const swapped = (transposeA ? sizeA : 2 * sizeA) + sizeC;
  return swapped < direct;
}

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return perm;
}

/** How to build each replacement from the stock kernel (absent for Conv2DBackpropFilter). */
const REPLACEMENTS: Record<string, (stock: KernelConfig | undefined) => KernelFunc> = {
  [Conv2DBackpropFilter]: () => conv2dBackpropFilter,
  [Conv2DBackpropInput]: () => conv2dBackpropInput,
  [MaxPoolGrad]: () => maxPoolGrad,
  [BatchMatMul]: (stock) => batchMatMulVia(requireStock(BatchMatMul, stock)),
  [Sum]: (stock) => sumVia(requireStock(Sum, stock)),
};

function requireStock(name: string, stock: KernelConfig | undefined): KernelFunc {
  if (!stock) throw new Error(`wasm backend has no ${name} kernel to wrap; import @tensorflow/tfjs-backend-wasm first`);
  return stock.kernelFunc;
}

export const WASM_TRAINING_KERNEL_NAMES: readonly string[] = Object.keys(REPLACEMENTS);

const installed = new Set<KernelFunc>();

/**
 * Installs edgefl's kernels over (or beside) the stock ones. Idempotent, because both
 * the backend loader and tests call it. Must run after @tensorflow/tfjs-backend-wasm is
 * imported (its registrations would otherwise overwrite these) and before the backend
 * initialises: the stock setupFunc is carried over, as wrapped kernels still need it.
 */
export function registerWasmTrainingKernels(): void {
  for (const [kernelName, build] of Object.entries(REPLACEMENTS)) {
    const stock = getKernel(kernelName, 'wasm');
    if (stock && installed.has(stock.kernelFunc)) continue;
    const kernelFunc = build(stock);
    installed.add(kernelFunc);
    if (stock) unregisterKernel(kernelName, 'wasm');
    registerKernel({ kernelName, backendName: 'wasm', kernelFunc, ...(stock?.setupFunc && { setupFunc: stock.setupFunc }) });
  }
}

/** Whether the kernel the engine will run on wasm is edgefl's. */
export function isEdgeflKernel(kernelName: string): boolean {
  const kernel = getKernel(kernelName, 'wasm');
  return kernel !== undefined && installed.has(kernel.kernelFunc);
}

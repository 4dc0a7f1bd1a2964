/**
 * The GEMM form of the conv gradients: im2col / col2im as JS passes over the wasm heap
 * around one XNNPACK matmul. Where the convolution form multiplies mostly padding
 * zeros (dx of a 'valid' conv) or must pack a huge dy as a conv filter (dW of a layer
 * with few input channels), this form does only the useful multiply-adds.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { ConvGeometry } from './conv-grad.js';
import { type Scratch, view } from './ops.js';

function heap(s: Scratch, t: TensorInfo): Float32Array {
  return s.backend.typedArrayFromHeap(t) as Float32Array;
}

/** Input row (or column) read by output position `o` at filter tap `k`, or -1 inside the padding. */
function source(o: number, k: number, stride: number, dilation: number, pad: number, size: number): number {
  const i = o * stride + k * dilation - pad;
  return i >= 0 && i < size ? i : -1;
}

/**
 * cols[(kh,kw,ic), (n,oh,ow)]: the patch matrix already transposed, so that
 * dW = cols · dy needs no transpose and dy (NHWC = [n*oh*ow, oc]) is used in place.
 */
function fillColsT(x: Float32Array, cols: Float32Array, g: ConvGeometry): void {
  const positions = g.batch * g.outH * g.outW;
  const [sw, dw] = [g.strides[1], g.dilations[1]];
  let row = 0;
  for (let kh = 0; kh < g.filterH; kh++)
    for (let kw = 0; kw < g.filterW; kw++) {
      // The outputs ow whose tap iw = ow*sw + kw*dw - padLeft lies inside the input: one range per
      // filter column, so the row's copy loop needs no bounds test (it took half the time).
      const shift = kw * dw - g.padLeft;
      const first = Math.min(g.outW, Math.max(0, Math.ceil(-shift / sw)));
      const end = Math.max(first, Math.min(g.outW, Math.floor((g.inW - 1 - shift) / sw) + 1));
      for (let ic = 0; ic < g.inC; ic++, row++) {
        let at = row * positions;
        for (let n = 0; n < g.batch; n++)
          for (let oh = 0; oh < g.outH; oh++, at += g.outW) {
            const ih = source(oh, kh, g.strides[0], g.dilations[0], g.padTop, g.inH);
            if (ih < 0 || first === end) {
              cols.fill(0, at, at + g.outW);
              continue;
            }
            if (first > 0) cols.fill(0, at, at + first);
            for (let ow = first, from = ((n * g.inH + ih) * g.inW + first * sw + shift) * g.inC + ic; ow < end; ow++, from += sw * g.inC) cols[at + ow] = x[from]!;
            if (end < g.outW) cols.fill(0, at + end, at + g.outW);
          }
      }
    }
}

/** dx[n, ih, iw, ic] += cols[(n,oh,ow), (kh,kw,ic)]: the adjoint of im2col. */
function scatterCols(cols: Float32Array, dx: Float32Array, g: ConvGeometry): void {
  const k = g.filterH * g.filterW * g.inC;
  // Unit stride and dilation along the width: the taps of one filter row that land inside the
  // input are one contiguous run, in the patch and in dx alike, added in a single loop.
  const unitWidth = g.strides[1] === 1 && g.dilations[1] === 1;
  dx.fill(0);
  let row = 0;
  for (let n = 0; n < g.batch; n++)
    for (let oh = 0; oh < g.outH; oh++)
      for (let ow = 0; ow < g.outW; ow++, row++)
        for (let kh = 0; kh < g.filterH; kh++) {
          const ih = source(oh, kh, g.strides[0], g.dilations[0], g.padTop, g.inH);
          if (ih < 0) continue;
          if (unitWidth) {
            const first = Math.max(0, g.padLeft - ow);
            const end = Math.min(g.filterW, g.inW + g.padLeft - ow);
            let to = ((n * g.inH + ih) * g.inW + ow - g.padLeft + first) * g.inC;
            for (let from = row * k + (kh * g.filterW + first) * g.inC, stop = row * k + (kh * g.filterW + end) * g.inC; from < stop; from++, to++) dx[to]! += cols[from]!;
            continue;
          }
          for (let kw = 0; kw < g.filterW; kw++) {
            const iw = source(ow, kw, g.strides[1], g.dilations[1], g.padLeft, g.inW);
            if (iw < 0) continue;
            const from = row * k + (kh * g.filterW + kw) * g.inC;
            const to = ((n * g.inH + ih) * g.inW + iw) * g.inC;
            for (let ic = 0; ic < g.inC; ic++) dx[to + ic]! += cols[from + ic]!;
          }
        }
}

export function filterGradientGemm(s: Scratch, x: TensorInfo, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const k = g.filterH * g.filterW * g.inC;
  const positions = g.batch * g.outH * g.outW;
  const cols = s.alloc([k, positions]);
  fillColsT(heap(s, x), heap(s, cols), g);
  const dw = s.matMul(cols, view(dy, [positions, g.outC]), false, false);
  return view(dw, [g.filterH, g.filterW, g.inC, g.outC]);
}

export function inputGradientGemm(s: Scratch, dy: TensorInfo, filter: TensorInfo, g: ConvGeometry): TensorInfo {
  const k = g.filterH * g.filterW * g.inC;
  const positions = g.batch * g.outH * g.outW;
  const cols = s.matMul(view(dy, [positions, g.outC]), view(filter, [k, g.outC]), false, true);
  const dx = s.alloc([g.batch, g.inH, g.inW, g.inC]);
  scatterCols(heap(s, cols), heap(s, dx), g);
  return dx;
}

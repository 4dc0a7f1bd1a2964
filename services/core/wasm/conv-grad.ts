/**
 * Conv2D gradients rewritten as forward convolutions, so that on the wasm backend they
 * run through XNNPACK's SIMD convolution instead of scalar loops. Only layout moves
 * (transpose, reverse, pad, slice) surround each convolution; all take NHWC tensors.
 */
import { backend_util, type TensorInfo } from '@tensorflow/tfjs-core';
import { type Pair, type Scratch, view } from './ops.js';

/** The forward convolution the gradient belongs to. */
export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  filterH: number;
  filterW: number;
  strides: Pair;
  dilations: Pair;
  /** Leading padding of the forward pass; trailing padding only adds zeros nothing reads. */
  padTop: number;
  padLeft: number;
}

export function geometryOf(info: backend_util.Conv2DInfo): ConvGeometry {
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    filterH: info.filterHeight,
    filterW: info.filterWidth,
    strides: [info.strideHeight, info.strideWidth],
    dilations: [info.dilationHeight, info.dilationWidth],
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** Trailing padding that makes a conv over `inLen` produce at least `need` outputs; extra outputs get cropped. */
function trailingPad(need: number, inLen: number, lead: number, step: number, filterLen: number, dilation: number): number {
  const span = (need - 1) * step + (filterLen - 1) * dilation + 1;
  return Math.max(0, span - inLen - lead);
}

/**
 * dW[kh,kw,ic,oc] = sum over n,oh,ow of x[n, oh*s + kh*d - pad, ..., ic] * dy[n,oh,ow,oc].
 * That is a convolution whose "batch" is ic, whose "channels" are n, whose filter is dy,
 * with stride d and dilation s (the forward pass's roles swapped).
 */
export function filterGradient(s: Scratch, x: TensorInfo, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const xByChannel = s.transpose(x, [3, 1, 2, 0]);
  const dyAsFilter = s.transpose(dy, [1, 2, 0, 3]);
  const [sh, sw] = g.strides;
  const [dh, dw] = g.dilations;
  const padH: Pair = [g.padTop, trailingPad(g.filterH, g.inH, g.padTop, dh, g.outH, sh)];
  const padW: Pair = [g.padLeft, trailingPad(g.filterW, g.inW, g.padLeft, dw, g.outW, sw)];
  const full = s.conv2d(xByChannel, dyAsFilter, [dh, dw], [sh, sw], padH, padW);
  const cropped = s.slice(full, [0, 0, 0, 0], [g.inC, g.filterH, g.filterW, g.outC]);
  return s.transpose(cropped, [1, 2, 0, 3]);
}

/**
 * Spreads dy so that consecutive outputs sit `stride` apart, by padding unit axes and
 * reshaping. The result keeps stride-1 zeros after the last row/column; callers account
 * for them in their trailing padding.
 */
function zeroInsert(s: Scratch, dy: TensorInfo, g: ConvGeometry): TensorInfo {
  const [sh, sw] = g.strides;
  if (sh === 1 && sw === 1) return dy;
  const spread = view(dy, [g.batch, g.outH, 1, g.outW, 1, g.outC]);
  const padded = s.pad(spread, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return view(padded, [g.batch, g.outH * sh, g.outW * sw, g.outC]);
}

/** Leading/trailing amounts along one axis; negative ones mean the source must be cropped. */
interface AxisFit {
  cropStart: number;
  keep: number;
  pad: Pair;
}

function fitAxis(srcLen: number, lead: number, total: number): AxisFit {
  const trail = total - lead - srcLen;
  const cropStart = Math.max(0, -lead);
  const keep = srcLen - cropStart - Math.max(0, -trail);
  return { cropStart, keep, pad: [Math.max(0, lead), Math.max(0, trail)] };
}

/**
 * dx is the "full" correlation of the stride-spread dy with the filter rotated by 180
 * degrees and its channel axes swapped, taken at stride 1 and the forward dilation.
 */
export function inputGradient(s: Scratch, dy: TensorInfo, filter: TensorInfo, g: ConvGeometry): TensorInfo {
  const rotated = s.transpose(s.reverse(filter, [0, 1]), [0, 1, 3, 2]);
  const spread = zeroInsert(s, dy, g);
  const [dh, dw] = g.dilations;
  const reachH = (g.filterH - 1) * dh;
  const reachW = (g.filterW - 1) * dw;
  const fitH = fitAxis(spread.shape[1]!, reachH - g.padTop, g.inH + reachH);
  const fitW = fitAxis(spread.shape[2]!, reachW - g.padLeft, g.inW + reachW);
  const src = s.slice(spread, [0, fitH.cropStart, fitW.cropStart, 0], [g.batch, fitH.keep, fitW.keep, g.outC]);
  return s.conv2d(src, rotated, [1, 1], [dh, dw], fitH.pad, fitW.pad);
}

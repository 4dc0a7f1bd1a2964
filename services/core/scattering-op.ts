/**
 * The scattering transform (scattering.ts) as tfjs-core ops: what serving's forward pass, the
 * training model's custom layer and DP-SGD's per-shard feature cache all call, so they compute
 * the same features. It has no weights and nothing differentiates through it (it is the first
 * layer, and only the weights after it train).
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';
import { filterBank, type Kernel2D, type ScatteringParams } from './scattering.js';

// require, as forward.ts does: serving loads this without tfjs-layers, on the one tfjs-core instance.
const tf = createRequire(import.meta.url)('@tensorflow/tfjs-core') as typeof Core;
type Tensor4D = Core.Tensor4D;

/** A scattering layer's settings: (J, L) and optional per-example normalisation over channel groups. */
export interface ScatteringLayerParams extends ScatteringParams {
  /** Per example, normalise each of this many contiguous channel groups to mean 0, variance 1 (GroupNorm without learned scale). */
  groups?: number;
}

/**
 * Depthwise filter data [k, k, channels, kernels.length] with the same kernels for every input
 * channel, from their real or imaginary parts; smaller kernels sit centred in the largest's window.
 */
function depthwiseFilter(kernels: readonly Kernel2D[], channels: number, part: 're' | 'im'): { data: Float32Array; size: number; multiplier: number } {
  const size = Math.max(...kernels.map((k) => k.size));
  const multiplier = kernels.length;
  const data = new Float32Array(size * size * channels * multiplier);
  kernels.forEach((k, f) => {
    const off = (size - k.size) / 2;
    for (let u = 0; u < k.size; u++)
      for (let v = 0; v < k.size; v++) {
        const at = ((u + off) * size + (v + off)) * channels * multiplier;
        for (let c = 0; c < channels; c++) data[at + c * multiplier + f] = k[part][u * k.size + v]!;
      }
  });
  return { data, size, multiplier };
}

const filterCache = new Map<string, ReturnType<typeof depthwiseFilter>>();
function filterTensor(key: string, make: () => ReturnType<typeof depthwiseFilter>, channels: number): Core.Tensor4D {
  let f = filterCache.get(key);
  if (!f) filterCache.set(key, (f = make()));
  return tf.tensor4d(f.data, [f.size, f.size, channels, f.multiplier]);
}

/**
 * |x ⋆ ψ| for every input channel and every kernel: [N, H, W, C·count], channel c·count + f. The
 * real and imaginary parts are two convolutions (slicing one interleaved result costs more on wasm).
 */
function modulusResponses(x: Tensor4D, kernels: readonly Kernel2D[], key: string): Tensor4D {
  const c = x.shape[3];
  const [re, im] = (['re', 'im'] as const).map((part) => tf.depthwiseConv2d(x, filterTensor(`${key}/${c}/${part}`, () => depthwiseFilter(kernels, c, part), c), 1, 'same'));
  return tf.sqrt(tf.add(tf.square(re!), tf.square(im!))) as Tensor4D;
}

/**
 * Per example, each of `groups` contiguous channel groups to mean 0 and variance 1. ε is far below
 * torch's 1e-5: order-2 coefficients of [0, 1] digits have variances near 1e-5 themselves.
 */
function groupNormalise(s: Tensor4D, groups: number): Tensor4D {
  const [n, h, w, c] = s.shape;
  const g = tf.reshape(s, [n, h, w, groups, c / groups]);
  const { mean, variance } = tf.moments(g, [1, 2, 4], true);
  return tf.reshape(tf.div(tf.sub(g, mean), tf.sqrt(tf.add(variance, 1e-10))), [n, h, w, c]);
}

/** Examples per slice: the order-2 responses of 32 digits are ~13 MB, where 256 would be ~100 MB of wasm heap for good. */
const SLICE = 32;

function scatterSlice(x: Tensor4D, p: ScatteringLayerParams): Tensor4D {
  const { J, L } = p;
  const bank = filterBank(p);
  const orders: Tensor4D[] = [x];
  const first = bank.psi.map((thetas, j) => modulusResponses(x, thetas, `psi${J}/${L}/${j}`));
  orders.push(...first);
  for (let j1 = 0; j1 < J; j1++) for (let j2 = j1 + 1; j2 < J; j2++) orders.push(modulusResponses(first[j1]!, bank.psi[j2]!, `psi${J}/${L}/${j2}`));
  const all = tf.concat(orders, 3);
  const channels = all.shape[3];
  const phi = filterTensor(`phi${J}/${channels}`, () => depthwiseFilter([bank.phi], channels, 're'), channels);
  const s = tf.depthwiseConv2d(all, phi, 2 ** J, 'same');
  return p.groups ? groupNormalise(s, p.groups) : s;
}

/**
 * Scattering coefficients of an NHWC batch: [N, ⌈H/2^J⌉, ⌈W/2^J⌉, C·(1 + JL + L²J(J−1)/2)],
 * order 0, then order 1 (j, θ), then order 2 (j1, j2, θ1, θ2). Computed in slices of 32 examples
 * so a large batch never holds every example's order-2 responses at once.
 */
export function scatter(x: Tensor4D, p: ScatteringLayerParams): Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    if (n <= SLICE) return scatterSlice(x, p);
    const parts: Tensor4D[] = [];
    for (let at = 0; at < n; at += SLICE) parts.push(tf.tidy(() => scatterSlice(tf.slice(x, [at, 0, 0, 0], [Math.min(SLICE, n - at), -1, -1, -1]), p)));
    return tf.concat(parts, 0);
  });
}

import { beforeAll, expect } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import type { backend_util } from '@tensorflow/tfjs-core';
import { tf } from '../../services/core/tf.js';
import { registerWasmTrainingKernels } from '../../services/core/wasm/kernels.js';
import type { Rng } from '../../datasets/rng.js';

/** What the wasm kernel suites share: backends, random shapes and values, and a tolerance check against cpu. */
export type Shape4 = [number, number, number, number];
export type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;

/** Registers edgefl's wasm kernels and makes sure both backends load, before the suite's first test. */
export function useWasmKernels(): void {
  beforeAll(async () => {
    registerWasmTrainingKernels();
    expect(await tf.setBackend('wasm')).toBe(true);
    expect(await tf.setBackend('cpu')).toBe(true);
  });
}

export const randInt = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
export const randomValues = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export async function on<T>(backend: 'cpu' | 'wasm', fn: () => T): Promise<T> {
  await tf.setBackend(backend);
  return fn();
}

/** Runs a kernel through the engine on one backend and returns its values. */
export async function runOn(backend: 'cpu' | 'wasm', kernel: string, inputs: Record<string, { values: Float32Array; shape: number[] }>, attrs: object): Promise<Float32Array> {
  return on(backend, () => {
    const tensors = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.values, v.shape)]));
    const out = tf.engine().runKernel(kernel, tensors, attrs as never) as tf.Tensor;
    const values = out.dataSync() as Float32Array;
    tf.dispose([out, ...Object.values(tensors)]);
    return values;
  });
}

/** Relative to the tensor's largest magnitude, so sums of many terms near zero do not fail spuriously. */
export function expectClose(actual: Float32Array, expected: Float32Array, label: string, rtol = 1e-4): void {
  expect(actual.length, label).toBe(expected.length);
  let scale = 1e-6;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / scale);
  expect(worst, `${label}: max error ${worst} relative to ${scale}`).toBeLessThan(rtol);
}

/**
 * A conv or pooling window on an h x w input: a filter of up to maxFilter, strides of 1 to 3, a
 * random padding. A single number pads all sides, and tfjs then sizes the output from the filter
 * height and stride height alone; such windows therefore get square filters and equal strides.
 */
export function randomWindow(rng: Rng, h: number, w: number, maxFilter: number): { fh: number; fw: number; strides: [number, number]; pad: Pad } {
  let fh = randInt(rng, 1, Math.min(h, maxFilter));
  let fw = randInt(rng, 1, Math.min(w, maxFilter));
  let strides: [number, number] = [randInt(rng, 1, 3), randInt(rng, 1, 3)];
  const pad = randomPad(rng, fh, fw);
  if (typeof pad === 'number') {
    fh = fw = Math.min(fh, fw);
    strides = [strides[0], strides[0]];
  }
  return { fh, fw, strides, pad };
}

/** valid, same, one number for all sides, or explicit per-side padding: a quarter each. */
function randomPad(rng: Rng, fh: number, fw: number): Pad {
  switch (randInt(rng, 0, 3)) {
    case 0:
      return 'valid';
    case 1:
      return 'same';
    case 2:
      return randInt(rng, 0, Math.min(fh, fw));
    default:
      return explicitPad(rng, fh, fw);
  }
}

export function explicitPad(rng: Rng, fh: number, fw: number): backend_util.ExplicitPadding {
  return [[0, 0], [randInt(rng, 0, fh), randInt(rng, 0, fh)], [randInt(rng, 0, fw), randInt(rng, 0, fw)], [0, 0]];
}

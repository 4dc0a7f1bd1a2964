import { expect } from 'vitest';
import type { ImageSet } from '../../datasets/types.js';

/** A set of `count` 28x28 digits of 10 classes whose label and pixel arrays agree with that count. */
export function expectDigitSet(set: ImageSet, count = set.count): void {
  expect(set.rows).toBe(28);
  expect(set.cols).toBe(28);
  expect(set.numClasses).toBe(10);
  expect(set.labels.length).toBe(count);
  expect(set.images.length).toBe(count * 28 * 28);
}

/** The smallest and largest pixel of a set (a loop: spreading 47M values into Math.min would overflow the stack). */
export function pixelRange(images: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of images) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

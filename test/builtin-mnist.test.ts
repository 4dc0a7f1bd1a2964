import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { builtinMnistSplit, loadBuiltinDigits } from '../datasets/builtin-mnist.js';
import { labelHistogram, type ImageSet } from '../datasets/types.js';
import { expectDigitSet, pixelRange } from './helpers/image-sets.js';

function imageHashes(set: ImageSet): string[] {
  const pixels = set.rows * set.cols;
  const out: string[] = [];
  for (let i = 0; i < set.count; i++) {
    const view = set.images.subarray(i * pixels, (i + 1) * pixels);
    out.push(createHash('sha1').update(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)).digest('hex'));
  }
  return out;
}

function sameSet(a: ImageSet, b: ImageSet): boolean {
  if (a.count !== b.count || a.labels.length !== b.labels.length) return false;
  return a.labels.every((l, i) => l === b.labels[i]) && a.images.every((v, i) => v === b.images[i]);
}

describe('loadBuiltinDigits', () => {
  const all = loadBuiltinDigits();

  it('holds 10,000 28x28 digits of 10 classes with consistent array sizes', () => {
    expect(all.count).toBe(10_000);
    expectDigitSet(all);
  });

  it('has no duplicate images, so hash-disjointness of a split means index-disjointness', () => {
    expect(new Set(imageHashes(all)).size).toBe(all.count);
  });
});

describe('builtinMnistSplit', () => {
  const split = builtinMnistSplit();

  it('splits 8000/2000 by default, 28x28, 10 classes', () => {
    expect(split.name).toBe('mnist-builtin');
    expect(split.train.count).toBe(8000);
    expect(split.test.count).toBe(2000);
    for (const set of [split.train, split.test]) expectDigitSet(set);
  });

  it('has pixels in [0, 1] and not all zero', () => {
    for (const set of [split.train, split.test]) {
      const { min, max } = pixelRange(set.images);
      expect(min).toBeGreaterThanOrEqual(0);
      expect(max).toBeLessThanOrEqual(1);
      expect(max).toBeGreaterThan(0.5);
    }
  });

  it('has no overlap between train and test, and together they are the whole set', () => {
    const train = imageHashes(split.train);
    const test = new Set(imageHashes(split.test));
    expect(test.size).toBe(2000);
    expect(train.filter((h) => test.has(h))).toEqual([]);
    const all = new Set(imageHashes(loadBuiltinDigits()));
    expect(new Set([...train, ...test])).toEqual(all);
  });

  it('keeps each image with its own label', () => {
    const all = loadBuiltinDigits();
    const labelOf = new Map(imageHashes(all).map((h, i) => [h, all.labels[i]!]));
    imageHashes(split.test).forEach((h, i) => expect(labelOf.get(h)).toBe(split.test.labels[i]));
  });

  it('has all 10 classes in both train and test, roughly in proportion', () => {
    const train = labelHistogram(split.train.labels, 10);
    const test = labelHistogram(split.test.labels, 10);
    for (let c = 0; c < 10; c++) {
      expect(train[c]).toBeGreaterThan(0);
      expect(test[c]).toBeGreaterThan(0);
      // every class is ~10% of the data; a shuffled split keeps that within a few points
      expect(test[c]! / 2000).toBeGreaterThan(0.05);
      expect(test[c]! / 2000).toBeLessThan(0.16);
    }
    // the test set is shuffled, not class-ordered
    expect(split.test.labels.slice(0, 200).every((l) => l === split.test.labels[0])).toBe(false);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const again = builtinMnistSplit();
    expect(sameSet(again.test, split.test)).toBe(true);
    expect(sameSet(again.train, split.train)).toBe(true);
    const seeded = builtinMnistSplit({ seed: 42 });
    expect(sameSet(seeded.test, split.test)).toBe(true);
    const other = builtinMnistSplit({ seed: 7 });
    const otherAgain = builtinMnistSplit({ seed: 7 });
    expect(sameSet(other.test, otherAgain.test)).toBe(true);
    expect(sameSet(other.test, split.test)).toBe(false);
    const a = new Set(imageHashes(split.test));
    const shared = imageHashes(other.test).filter((h) => a.has(h)).length;
    // two independent 20% samples share ~20% of their members, far from all of them
    expect(shared).toBeLessThan(1000);
  });

  it('honours testSize and rejects impossible ones', () => {
    const small = builtinMnistSplit({ testSize: 500, seed: 3 });
    expect(small.test.count).toBe(500);
    expect(small.train.count).toBe(9500);
    expect(() => builtinMnistSplit({ testSize: 0 })).toThrow(/testSize must be in 1\.\.9999, got 0/);
    expect(() => builtinMnistSplit({ testSize: 10_000 })).toThrow(/testSize/);
  });
});

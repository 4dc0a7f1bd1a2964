import { PNG } from 'pngjs';
import { encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { PIXELS, buildModel, getFlatWeights, referenceModelSpec } from '../../services/core/model.js';
import { trainLocal } from '../../services/core/train.js';
import { builtinMnistSplit } from '../../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../../datasets/types.js';

const split = builtinMnistSplit();

/** `n` held-out digits (never trained on), from `start`. */
export function heldOutDigits(n: number, start = 500): ImageSet {
  return subset(split.test, Array.from({ length: n }, (_, i) => start + i));
}

/** Digit i of `set` as an 8-bit grayscale PNG file, white on black as MNIST is. */
export function digitPng(set: ImageSet, i: number): Buffer {
  const png = new PNG({ width: 28, height: 28 });
  for (let p = 0; p < PIXELS; p++) {
    const g = Math.round(255 * set.images[i * PIXELS + p]!);
    png.data.set([g, g, g, 255], p * 4);
  }
  return PNG.sync.write(png);
}

/** Model weights as the store holds them. */
export function weightsRow(flat: Float32Array) {
  const bytes = encodeWeights(referenceModelSpec(), flat);
  return { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } };
}

/**
 * A model trained on digits disjoint from the held-out ones, 97-98% on those this suite uses
 * (serving.test.ts trains on 2,400 digits, ~94%: too close to a 95% bar measured on 100 images).
 */
export async function trainedWeights(): Promise<Float32Array> {
  const train = subset(split.train, Array.from({ length: 6000 }, (_, i) => i));
  const model = buildModel(1);
  await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.002, seed: 1 });
  await trainLocal(model, train, { epochs: 1, batchSize: 32, learningRate: 0.0005, seed: 2 });
  const flat = getFlatWeights(model);
  model.dispose();
  return flat;
}

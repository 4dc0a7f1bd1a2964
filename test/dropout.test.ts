import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type tfl } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { buildModel, dropoutStepSeed, getFlatWeights, seedDropout } from '../services/core/model.js';
import { trainLocal } from '../services/core/train.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../datasets/types.js';

/** The mask drop1 applies to an all-ones input in training mode (kept units are 1/(1-rate), dropped 0). */
function mask(model: tfl.LayersModel, seed?: number): Float32Array {
  if (seed !== undefined) seedDropout(model, seed);
  const layer = model.getLayer('drop1');
  return tf.tidy(() => (layer.apply(tf.ones([1, 12, 12, 32]), { training: true }) as tf.Tensor).dataSync() as Float32Array);
}
const same = (a: Float32Array, b: Float32Array) => a.every((v, i) => v === b[i]);

let shard: ImageSet;
beforeAll(async () => {
  await initBackend('wasm');
  shard = subset(builtinMnistSplit().train, Array.from({ length: 64 }, (_, i) => i));
});

describe('dropout masks', () => {
  it('a seed set at build time alone gives the same mask on every call (the bug this fixes)', () => {
    const model = buildModel(1);
    expect(same(mask(model), mask(model))).toBe(true);
  });

  it('differ across steps, nodes and rounds, and are identical for the same (run seed, node, round, step)', () => {
    const model = buildModel(1);
    const m = (runSeed: number, node: string, round: number, step: number) => mask(model, dropoutStepSeed(runSeed, node, round, step));
    const base = m(7, 'node-0', 3, 0);
    expect(same(base, m(7, 'node-0', 3, 0))).toBe(true);
    for (const other of [m(7, 'node-0', 3, 1), m(7, 'node-1', 3, 0), m(7, 'node-0', 4, 0), m(8, 'node-0', 3, 0)]) {
      expect(same(base, other)).toBe(false);
      // Both are real dropout masks at rate 0.25, just different ones.
      const dropped = other.filter((v) => v === 0).length / other.length;
      expect(dropped).toBeGreaterThan(0.15);
      expect(dropped).toBeLessThan(0.35);
    }
  });

  it('training draws a fresh seed per step, reproducibly, so the round changes the result', async () => {
    // One thread: this reads the seed the tfjs-layers loop sets on its Dropout layer (the threads draw the same masks themselves; test/parallel-train.test.ts).
    const train = async (round: number) => {
      const model = buildModel(1);
      const seeds: number[] = [];
      const drop = model.getLayer('drop2') as unknown as { seed: number };
      await trainLocal(model, shard, { threads: 1, epochs: 1, batchSize: 16, learningRate: 0.01, seed: 5, dropout: { runSeed: 5, node: 'node-0', round }, onProgress: () => void seeds.push(drop.seed) });
      return { seeds, weights: getFlatWeights(model) };
    };
    const a = await train(1);
    const again = await train(1);
    const other = await train(2);
    expect(a.seeds).toHaveLength(4);
    expect(new Set(a.seeds).size).toBe(4);
    expect(again.seeds).toEqual(a.seeds);
    expect(same(again.weights, a.weights)).toBe(true);
    // Same data order (same shuffle seed), different round: only the masks differ, and so do the weights.
    expect(same(other.weights, a.weights)).toBe(false);
  });
});

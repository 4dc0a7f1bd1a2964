import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { shardOptimizer, sumSlots } from '../services/core/shard-optimizer.js';
import type { OptimizerName } from '../services/core/train.js';
import { createRng } from '../datasets/rng.js';

const randomValues = (rng: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

/** `steps` updates of tfjs's own optimiser on one variable, and of the shard optimiser on two slices of it. */
function bothOptimisers(name: OptimizerName, learningRate: number, size: number, steps: number, seed: number) {
  const rng = createRng(seed);
  const initial = randomValues(rng, size);
  const gradients = Array.from({ length: steps }, () => randomValues(rng, size, 0.1));
  const variable = tf.variable(tf.tensor1d(initial));
  const optimizer = name === 'sgd' ? tf.train.momentum(learningRate, 0.9) : tf.train.adam(learningRate);
  for (const g of gradients) tf.tidy(() => optimizer.applyGradients([{ name: variable.name, tensor: tf.tensor1d(g) }]));
  const expected = variable.dataSync() as Float32Array;
  tf.dispose(variable);
  optimizer.dispose();

  const split = Math.floor(size / 3);
  const weights = initial.slice();
  const slices = [[0, split], [split, size]].map(([from, to]) => ({ from, to, opt: shardOptimizer(name, to - from, learningRate, tf.backend().epsilon()) }));
  for (const g of gradients) for (const { from, to, opt } of slices) opt.apply(g.subarray(from, to), weights.subarray(from, to));
  return { expected, actual: weights, initial };
}

describe('shard optimiser', () => {
  it.each([
    ['adam', 0.01],
    ['sgd', 0.05],
  ] as const)('%s on slices gives tfjs optimiser results on the whole vector', (name, lr) => {
    const { expected, actual, initial } = bothOptimisers(name, lr, 1001, 12, 5);
    expect(maxAbsDiff(expected, initial)).toBeGreaterThan(1e-2); // the steps moved the weights
    // Both run float32 arithmetic in the same order: bit for bit the same weights.
    expect(maxAbsDiff(actual, expected)).toBe(0);
  });

  it('the two optimisers differ (the test above would notice a swapped update rule)', () => {
    const adam = bothOptimisers('adam', 0.01, 50, 3, 1);
    const sgd = bothOptimisers('sgd', 0.01, 50, 3, 1);
    expect(maxAbsDiff(adam.actual, sgd.actual)).toBeGreaterThan(1e-3);
  });

  it('sums slots element-wise over the requested range only', () => {
    const slots = [Float32Array.from([1, 2, 3, 4]), Float32Array.from([10, 20, 30, 40]), Float32Array.from([100, 200, 300, 400])];
    const sum = new Float32Array(2);
    sumSlots(slots, 1, sum);
    expect([...sum]).toEqual([222, 333]);
  });
});

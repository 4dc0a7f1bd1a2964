import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights } from '../services/core/model.js';
import { proximalTerm, trainLocal } from '../services/core/train.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../datasets/types.js';

let shard: ImageSet;
beforeAll(async () => {
  await initBackend('wasm');
  // One class only: the skewed shard on which local models drift, which FedProx exists for.
  const train = builtinMnistSplit().train;
  const sevens = Array.from({ length: train.count }, (_, i) => i).filter((i) => train.labels[i] === 7).slice(0, 96);
  shard = subset(train, sevens);
});

const distance = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0));

describe('FedProx', () => {
  it('the gradient of the proximal term is mu·(w − w0)', () => {
    const mu = 0.3;
    const w0 = [tf.tensor2d([[1, -2], [0.5, 4]]), tf.tensor1d([3, -1, 0])];
    const w = [tf.variable(tf.tensor2d([[2, -2], [-0.5, 1]])), tf.variable(tf.tensor1d([3.5, 1, -2]))];
    const { value, grads } = tf.variableGrads(() => proximalTerm(w, w0, mu), w);
    // mu/2·Σ(w − w0)² = 0.15·(1 + 0 + 1 + 9 + 0.25 + 4 + 4)
    expect(value.dataSync()[0]).toBeCloseTo(0.15 * 19.25, 5);
    for (let i = 0; i < w.length; i++) {
      const expected = tf.mul(mu, tf.sub(w[i]!, w0[i]!)).dataSync();
      expect(Array.from(grads[w[i]!.name]!.dataSync())).toEqual(Array.from(expected).map((x) => expect.closeTo(x, 6)));
    }
    tf.dispose([value, ...Object.values(grads), ...w, ...w0]);
  });

  it('with mu > 0 the local update stays closer to the global weights than without', async () => {
    const trainWith = async (proximalMu: number) => {
      const model = buildModel(1);
      const global = getFlatWeights(model);
      await trainLocal(model, shard, { epochs: 2, batchSize: 16, learningRate: 0.05, optimizer: 'sgd', proximalMu, seed: 3 });
      const d = distance(getFlatWeights(model), global);
      model.dispose();
      return d;
    };
    const plain = await trainWith(0);
    const prox = await trainWith(1);
    expect(plain).toBeGreaterThan(0);
    // Same data order, same masks, same steps: only the proximal pull differs.
    expect(prox / plain).toBeLessThan(0.9);
  });
});

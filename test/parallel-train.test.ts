import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights } from '../services/core/model.js';
import { cgroupCpus, closeTrainingPool, parallelPlan, splitRows, trainParallel, trainThreads } from '../services/core/parallel-train.js';
import { trainLocal, type TrainOptions } from '../services/core/train.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset, type ImageSet } from '../datasets/types.js';

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

let shard: ImageSet;
beforeAll(async () => {
  await initBackend('wasm');
  // 70 samples at batch 32: two full batches and a partial one of 6.
  shard = subset(builtinMnistSplit().train, Array.from({ length: 70 }, (_, i) => i * 3));
});
afterAll(closeTrainingPool);

/** Trains seed-1 weights once on one thread (the tfjs-layers loop) and once on `threads` worker threads. */
async function both(opts: TrainOptions, threads: number) {
  const single = buildModel(1);
  const r1 = await trainLocal(single, shard, { ...opts, threads: 1 });
  const parallel = buildModel(1);
  const plan = parallelPlan(parallel, { ...opts, threads });
  expect(plan?.threads).toBe(threads); // the threads really run (the worker script is built)
  const rN = await trainParallel(parallel, shard, opts, plan!);
  return { single: getFlatWeights(single), parallel: getFlatWeights(parallel), r1, rN, initial: getFlatWeights(buildModel(1)) };
}

describe('data-parallel training', () => {
  const base: TrainOptions = { epochs: 2, batchSize: 32, learningRate: 0.01, seed: 4, dropout: { runSeed: 9, node: 'node-1', round: 2 } };

  it.each([
    ['Adam, dropout on, 2 threads', base, 2],
    ['SGD with momentum and FedProx, 3 threads (uneven rows)', { ...base, optimizer: 'sgd', learningRate: 0.05, proximalMu: 0.5 } as TrainOptions, 3],
  ])('gives the single-threaded weights and metrics up to float error: %s', async (_, opts, threads) => {
    const { single, parallel, r1, rN, initial } = await both(opts, threads);
    // Training moved the weights far more than the two runs differ.
    expect(maxAbsDiff(single, initial)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(parallel, single)).toBeLessThan(2e-4);
    expect(rN.steps).toBe(r1.steps);
    expect(rN.loss).toBeCloseTo(r1.loss, 4);
    expect(rN.accuracy).toBeCloseTo(r1.accuracy, 6);
  });

  it('gives a different result with different dropout masks (the masks are the single-threaded ones, not just any)', async () => {
    const { single } = await both(base, 2);
    const other = buildModel(1);
    const plan = parallelPlan(other, { ...base, threads: 2 })!;
    await trainParallel(other, shard, { ...base, dropout: { ...base.dropout!, round: 3 } }, plan);
    expect(maxAbsDiff(getFlatWeights(other), single)).toBeGreaterThan(1e-3);
  });

  it('two trainings at once in one process (in-process trainers) each get their own result', async () => {
    const opts: TrainOptions = { ...base, epochs: 1 };
    const run = (seed: number) => {
      const model = buildModel(seed);
      return trainParallel(model, shard, opts, parallelPlan(model, { threads: 2 })!).then(() => getFlatWeights(model));
    };
    const [a, b] = await Promise.all([run(1), run(2)]);
    expect(maxAbsDiff(a, await run(1))).toBe(0);
    expect(maxAbsDiff(b, await run(2))).toBe(0);
  });

  it('threads that die with steps queued fail the training at once, and the next training gets fresh threads', async () => {
    const model = buildModel(1);
    const started = Date.now();
    // The threads end after the first step is answered, while the next is already queued to them.
    const training = trainParallel(model, shard, { ...base, onProgress: () => void closeTrainingPool() }, parallelPlan(model, { threads: 2 })!);
    await expect(training).rejects.toThrow(/training thread exited|training threads stopped/);
    // Not the barrier's 120 s timeout: every queued step fails when a thread exits.
    expect(Date.now() - started).toBeLessThan(60_000);
    const again = buildModel(1);
    const r = await trainParallel(again, shard, { ...base, epochs: 1 }, parallelPlan(again, { threads: 2 })!);
    expect(r.steps).toBe(3);
  });

  it('stops between steps when asked', async () => {
    const model = buildModel(1);
    let calls = 0;
    const r = await trainParallel(model, shard, { ...base, shouldStop: () => ++calls > 2 }, parallelPlan(model, { threads: 2 })!);
    expect(r.stopped).toBe(true);
    expect(r.steps).toBe(2);
  });
});

describe('thread count', () => {
  it('follows the cgroup CPU quota (Knative CPU limit), EDGEFL_TRAIN_THREADS, else every core', () => {
    expect(cgroupCpus('max 100000')).toBeUndefined();
    expect(cgroupCpus('200000 100000')).toBe(2);
    expect(cgroupCpus('50000 100000')).toBe(1);
    expect(cgroupCpus(undefined)).toBeUndefined();
    const noLimit = () => undefined;
    expect(trainThreads({}, '100000 100000', 8, noLimit)).toBe(1);
    expect(trainThreads({}, '400000 100000', 2, noLimit)).toBe(2);
    expect(trainThreads({}, 'max 100000', 6, noLimit)).toBe(6);
    expect(trainThreads({ EDGEFL_TRAIN_THREADS: '3' }, '100000 100000', 8, noLimit)).toBe(3);
    expect(trainThreads({ EDGEFL_TRAIN_THREADS: 'x' }, undefined, 4, noLimit)).toBe(4);
  });

  it('takes no more threads than the memory limit holds (each costs its own wasm heap and weights)', () => {
    expect(trainThreads({}, 'max 100000', 8, () => 512)).toBe(2);
    expect(trainThreads({}, 'max 100000', 8, () => 256)).toBe(1);
    expect(trainThreads({}, 'max 100000', 8, () => 4096)).toBe(8);
    expect(trainThreads({ EDGEFL_MEMORY_LIMIT_MIB: '300' }, 'max 100000', 8, () => 4096)).toBe(1);
  });

  it('splits a batch into contiguous row ranges, leading threads larger', () => {
    expect(splitRows(32, 2)).toEqual([[0, 16], [16, 32]]);
    expect(splitRows(7, 3)).toEqual([[0, 3], [3, 5], [5, 7]]);
    expect(splitRows(1, 2)).toEqual([[0, 1], [1, 1]]);
  });

  it('stays on one thread when the model is not the spec it is told', () => {
    expect(parallelPlan(buildModel(1), { epochs: 1, batchSize: 8, learningRate: 0.1, threads: 2, spec: { name: 'x', inputShape: [4, 4, 1], classes: 2, layers: [{ kind: 'flatten', name: 'f' }, { kind: 'dense', name: 'd', units: 2, activation: 'softmax' }] } })).toBeUndefined();
    expect(parallelPlan(buildModel(1), { epochs: 1, batchSize: 8, learningRate: 0.1, threads: 1 })).toBeUndefined();
  });
});

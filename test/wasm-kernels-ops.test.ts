import { describe, expect, it } from 'vitest';
import { tf } from '../services/core/tf.js';
import { createRng } from '../datasets/rng.js';
import { columnSums } from '../services/core/wasm/reduce.js';
import { expectClose, on, randInt, randomValues, randomWindow, runOn, size, useWasmKernels, type Shape4 } from './helpers/kernel-check.js';

// edgefl's wasm MaxPoolGrad, BatchMatMul and Sum against tfjs's cpu kernels; the conv gradients: wasm-kernels.test.ts.
useWasmKernels();

describe('MaxPoolGrad vs cpu', () => {
  const rng = createRng(4242);
  const cases = Array.from({ length: 40 }, (_, i) => {
    const h = randInt(rng, 2, 13);
    const w = randInt(rng, 2, 13);
    const { fh, fw, strides, pad } = randomWindow(rng, h, w, 4);
    if (typeof pad === 'object') return undefined; // pooling takes no explicit padding
    // Coarse values (and ReLU-like zeros) make ties, where the routing rule matters.
    const coarse = i % 2 === 0;
    return { shape: [randInt(rng, 1, 4), h, w, randInt(rng, 1, 9)] as Shape4, filterSize: [fh, fw] as [number, number], strides, pad, coarse };
  }).filter((c) => c !== undefined);
  cases.push({ shape: [32, 24, 24, 32], filterSize: [2, 2], strides: [2, 2], pad: 'valid', coarse: true });

  it.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s', async (_name, c) => {
    const values = randomValues(rng, size(c.shape)).map((v) => (c.coarse ? Math.max(0, Math.round(v * 3)) : v));
    const attrs = { filterSize: c.filterSize, strides: c.strides, pad: c.pad, dimRoundingMode: typeof c.pad === 'number' ? 'ceil' : undefined };
    const output = await on('cpu', () => {
      const x = tf.tensor4d(values, c.shape);
      const y = tf.engine().runKernel('MaxPool', { x }, attrs as never) as tf.Tensor;
      const out = { values: y.dataSync() as Float32Array, shape: y.shape };
      tf.dispose([x, y]);
      return out;
    });
    const inputs = { dy: { values: randomValues(rng, size(output.shape)), shape: output.shape }, input: { values, shape: c.shape }, output };
    const expected = await runOn('cpu', 'MaxPoolGrad', inputs, attrs);
    const actual = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
    expectClose(actual, expected, 'MaxPoolGrad', 1e-6);
  });
});

describe('BatchMatMul vs cpu', () => {
  const rng = createRng(1717);
  const cases = Array.from({ length: 30 }, () => {
    const [m, k, n] = [randInt(rng, 1, 40), randInt(rng, 1, 40), randInt(rng, 1, 40)];
    const batch = [[], [randInt(rng, 1, 3)], [2, randInt(rng, 1, 3)]][randInt(rng, 0, 2)]!;
    const transposeA = rng() < 0.5;
    const transposeB = rng() < 0.5;
    const bBatch = batch.length && rng() < 0.3 ? batch.map(() => 1) : batch;
    return { aShape: [...batch, ...(transposeA ? [k, m] : [m, k])], bShape: [...bBatch, ...(transposeB ? [n, k] : [k, n])], transposeA, transposeB };
  });
  cases.push({ aShape: [32, 1024], bShape: [32, 256], transposeA: true, transposeB: false });
  cases.push({ aShape: [32, 256], bShape: [1024, 256], transposeA: false, transposeB: true });
  cases.push({ aShape: [256, 32], bShape: [1024, 256], transposeA: true, transposeB: true });
  cases.push({ aShape: [300, 20], bShape: [7, 20], transposeA: false, transposeB: true });

  it.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s', async (_name, c) => {
    const inputs = { a: { values: randomValues(rng, size(c.aShape)), shape: c.aShape }, b: { values: randomValues(rng, size(c.bShape)), shape: c.bShape } };
    const attrs = { transposeA: c.transposeA, transposeB: c.transposeB };
    expectClose(await runOn('wasm', 'BatchMatMul', inputs, attrs), await runOn('cpu', 'BatchMatMul', inputs, attrs), 'BatchMatMul');
  });
});

describe('columnSums', () => {
  it('sums every row, whatever the row count modulo the four rows it adds at a time', () => {
    const rng = createRng(99);
    for (let rows = 0; rows <= 9; rows++) {
      const cols = 3;
      const x = randomValues(rng, rows * cols);
      const naive = Array.from({ length: cols }, (_, c) => Array.from({ length: rows }, (_, r) => x[r * cols + c]!).reduce((a, b) => a + b, 0));
      const sums = [...columnSums(x, rows, cols)];
      sums.forEach((v, c) => expect(v).toBeCloseTo(naive[c]!, 12));
    }
  });
});

describe('Sum vs cpu', () => {
  const rng = createRng(555);
  const cases = Array.from({ length: 30 }, () => {
    const rank = randInt(rng, 1, 4);
    const shape = Array.from({ length: rank }, () => randInt(rng, 1, 9));
    // Mostly leading blocks (the replaced path), some arbitrary axes (the stock path).
    const axis = rng() < 0.7 ? Array.from({ length: randInt(rng, 1, rank) }, (_, i) => i) : [randInt(rng, 0, rank - 1)];
    return { shape, axis, keepDims: rng() < 0.3 };
  });
  cases.push({ shape: [32, 24, 24, 32], axis: [0, 1, 2], keepDims: false });

  it.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s', async (_name, c) => {
    const inputs = { x: { values: randomValues(rng, size(c.shape)), shape: c.shape } };
    const attrs = { axis: c.axis, keepDims: c.keepDims };
    const shapeOn = (backend: 'cpu' | 'wasm') =>
      on(backend, () => {
        const x = tf.tensor(inputs.x.values, c.shape);
        const y = tf.engine().runKernel('Sum', { x }, attrs as never) as tf.Tensor;
        tf.dispose([x, y]);
        return y.shape;
      });
    expect(await shapeOn('wasm')).toEqual(await shapeOn('cpu'));
    expectClose(await runOn('wasm', 'Sum', inputs, attrs), await runOn('cpu', 'Sum', inputs, attrs), 'Sum');
  });
});

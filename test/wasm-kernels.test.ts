import { describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { backend_util, getKernel, type TensorInfo } from '@tensorflow/tfjs-core';
import { tf } from '../services/core/tf.js';
import { buildModel, getFlatWeights, setFlatWeights } from '../services/core/model.js';
import { convGradForm, isEdgeflKernel, registerWasmTrainingKernels, WASM_TRAINING_KERNEL_NAMES, type ConvGradForm } from '../services/core/wasm/kernels.js';
import { filterGradientGemm, inputGradientGemm } from '../services/core/wasm/im2col.js';
import { filterGradient, geometryOf, inputGradient, type ConvGeometry } from '../services/core/wasm/conv-grad.js';
import { Scratch } from '../services/core/wasm/ops.js';
import { createRng, type Rng } from '../datasets/rng.js';
import { expectClose, explicitPad, on, randInt, randomValues, randomWindow, runOn, size, useWasmKernels, type Pad, type Shape4 } from './helpers/kernel-check.js';

// edgefl's wasm conv gradients against tfjs's cpu kernels and naive loops, and a whole training
// step; MaxPoolGrad, BatchMatMul and Sum against cpu: wasm-kernels-ops.test.ts.
useWasmKernels();

type Format = 'NHWC' | 'NCHW';

interface Case {
  label: string;
  inShape: Shape4;
  filterShape: Shape4;
  strides: [number, number];
  pad: Pad;
  dataFormat: Format;
  dimRoundingMode?: Rounding;
}

function toFormat(shape: Shape4, format: Format): Shape4 {
  return format === 'NHWC' ? shape : [shape[0], shape[3], shape[1], shape[2]];
}

type Rounding = 'floor' | 'round' | 'ceil' | undefined;
const ROUNDINGS: Rounding[] = [undefined, 'floor', 'round', 'ceil'];

function randomCase(rng: Rng, i: number): Case {
  const h = randInt(rng, 3, 14);
  const w = randInt(rng, 3, 14);
  const { fh, fw, strides, pad } = randomWindow(rng, h, w, 5);
  const dataFormat: Format = rng() < 0.2 ? 'NCHW' : 'NHWC';
  const inC = randInt(rng, 1, 6);
  const explicit = typeof pad === 'number' || typeof pad === 'object';
  return {
    label: `case ${i}`,
    inShape: [randInt(rng, 1, 5), h, w, inC],
    filterShape: [fh, fw, inC, randInt(rng, 1, 7)],
    strides,
    pad,
    dataFormat,
    dimRoundingMode: explicit ? ROUNDINGS[randInt(rng, 0, 3)] : undefined,
  };
}

/** Both formulations must be right on every shape, whichever 'auto' would pick. */
async function forEachForm(check: (form: ConvGradForm) => Promise<void>): Promise<void> {
  try {
    for (const form of ['conv', 'gemm', 'auto'] as const) {
      convGradForm.current = form;
      await check(form);
    }
  } finally {
    convGradForm.current = 'auto';
  }
}

function dyShape(c: Case): Shape4 {
  const layout = c.dataFormat === 'NHWC' ? 'channelsLast' : 'channelsFirst';
  const info = backend_util.computeConv2DInfo(toFormat(c.inShape, c.dataFormat), c.filterShape, c.strides, 1, c.pad, c.dimRoundingMode, false, layout);
  return info.outShape as Shape4;
}

/** The model's own layers, at batch 8 only because the cpu reference takes ~30 s at 32. */
const CNN_CASES: Case[] = [
  { label: 'cnn conv1', inShape: [8, 28, 28, 1], filterShape: [5, 5, 1, 32], strides: [1, 1], pad: 'valid', dataFormat: 'NHWC' },
  { label: 'cnn conv2', inShape: [8, 12, 12, 32], filterShape: [5, 5, 32, 64], strides: [1, 1], pad: 'valid', dataFormat: 'NHWC' },
];

function allCases(): Case[] {
  const rng = createRng(20240611);
  return [...CNN_CASES, ...Array.from({ length: 60 }, (_, i) => randomCase(rng, i))];
}

describe('registerWasmTrainingKernels', () => {
  it('installs every replacement on wasm and is idempotent', () => {
    const before = WASM_TRAINING_KERNEL_NAMES.map((name) => getKernel(name, 'wasm')?.kernelFunc);
    registerWasmTrainingKernels();
    registerWasmTrainingKernels();
    expect(WASM_TRAINING_KERNEL_NAMES).toEqual(expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad', 'BatchMatMul', 'Sum']));
    for (const name of WASM_TRAINING_KERNEL_NAMES) expect(isEdgeflKernel(name), name).toBe(true);
    expect(WASM_TRAINING_KERNEL_NAMES.map((name) => getKernel(name, 'wasm')?.kernelFunc)).toEqual(before);
  });
});

describe.each(allCases().map((c) => [`${c.label} ${JSON.stringify(c)}`, c] as const))('conv2d gradients vs cpu: %s', (_name, c) => {
  const rng = createRng(size(c.inShape) * 31 + size(c.filterShape));
  const x = { values: randomValues(rng, size(c.inShape)), shape: toFormat(c.inShape, c.dataFormat) };
  const dyDims = dyShape(c);
  const dy = { values: randomValues(rng, size(dyDims)), shape: dyDims };
  const filter = { values: randomValues(rng, size(c.filterShape)), shape: c.filterShape };
  const common = { strides: c.strides, pad: c.pad, dataFormat: c.dataFormat, dimRoundingMode: c.dimRoundingMode };

  it('Conv2DBackpropFilter', async () => {
    const attrs = { ...common, filterShape: c.filterShape };
    const expected = await runOn('cpu', 'Conv2DBackpropFilter', { x, dy }, attrs);
    await forEachForm(async (form) => expectClose(await runOn('wasm', 'Conv2DBackpropFilter', { x, dy }, attrs), expected, `${c.label} ${form}`));
  }, 60_000);

  it('Conv2DBackpropInput', async () => {
    const attrs = { ...common, inputShape: x.shape };
    const expected = await runOn('cpu', 'Conv2DBackpropInput', { dy, filter }, attrs);
    await forEachForm(async (form) => expectClose(await runOn('wasm', 'Conv2DBackpropInput', { dy, filter }, attrs), expected, `${c.label} ${form}`));
  }, 60_000);
});
/** Textbook loops over the forward definition; the oracle for dilations, which tfjs's gradients reject. */
function naiveGradients(g: ConvGeometry, x: Float32Array, w: Float32Array, dy: Float32Array): { dx: Float32Array; dw: Float32Array } {
  const dx = new Float32Array(g.batch * g.inH * g.inW * g.inC);
  const dw = new Float32Array(g.filterH * g.filterW * g.inC * g.outC);
  for (let n = 0; n < g.batch; n++)
    for (let oh = 0; oh < g.outH; oh++)
      for (let ow = 0; ow < g.outW; ow++)
        for (let kh = 0; kh < g.filterH; kh++)
          for (let kw = 0; kw < g.filterW; kw++) {
            const ih = oh * g.strides[0] + kh * g.dilations[0] - g.padTop;
            const iw = ow * g.strides[1] + kw * g.dilations[1] - g.padLeft;
            if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
            for (let ic = 0; ic < g.inC; ic++)
              for (let oc = 0; oc < g.outC; oc++) {
                const d = dy[((n * g.outH + oh) * g.outW + ow) * g.outC + oc]!;
                const xi = ((n * g.inH + ih) * g.inW + iw) * g.inC + ic;
                const wi = ((kh * g.filterW + kw) * g.inC + ic) * g.outC + oc;
                dx[xi]! += d * w[wi]!;
                dw[wi]! += d * x[xi]!;
              }
          }
  return { dx, dw };
}

describe('dilated conv gradients (both forms) vs naive loops', () => {
  const rng = createRng(7);
  const cases = Array.from({ length: 25 }, () => {
    const h = randInt(rng, 6, 16);
    const w = randInt(rng, 6, 16);
    const dilations: [number, number] = [randInt(rng, 1, 3), randInt(rng, 1, 3)];
    const fh = randInt(rng, 1, 3);
    const fw = randInt(rng, 1, 3);
    const inC = randInt(rng, 1, 4);
    // Numeric pads would need square filters (see randomWindow); explicit ones cover the same ground.
    const pad = [explicitPad(rng, fh, fw), 'same' as const, 'valid' as const][randInt(rng, 0, 2)]!;
    const strides: [number, number] = [randInt(rng, 1, 3), randInt(rng, 1, 3)];
    const info = backend_util.computeConv2DInfo([randInt(rng, 1, 3), h, w, inC], [fh, fw, inC, randInt(rng, 1, 5)], strides, dilations, pad);
    return geometryOf(info);
  }).filter((g) => g.outH > 0 && g.outW > 0);

  it.each(cases.map((g) => [JSON.stringify(g), g] as const))('%s', async (_name, g) => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as BackendWasm;
    const x = tf.tensor4d(randomValues(rng, g.batch * g.inH * g.inW * g.inC), [g.batch, g.inH, g.inW, g.inC]);
    const w = tf.tensor4d(randomValues(rng, g.filterH * g.filterW * g.inC * g.outC), [g.filterH, g.filterW, g.inC, g.outC]);
    const dy = tf.tensor4d(randomValues(rng, g.batch * g.outH * g.outW * g.outC), [g.batch, g.outH, g.outW, g.outC]);
    const expected = naiveGradients(g, x.dataSync() as Float32Array, w.dataSync() as Float32Array, dy.dataSync() as Float32Array);
    const idsBefore = backend.numDataIds();
    const read = (fn: (s: Scratch) => TensorInfo) => {
      const s = new Scratch(backend);
      const out = fn(s);
      s.release(out);
      const t = tf.engine().makeTensorFromTensorInfo(out, backend);
      const values = t.dataSync() as Float32Array;
      t.dispose();
      return values;
    };
    expectClose(read((s) => filterGradient(s, x, dy, g)), expected.dw, 'dW conv');
    expectClose(read((s) => inputGradient(s, dy, w, g)), expected.dx, 'dx conv');
    expectClose(read((s) => filterGradientGemm(s, x, dy, g)), expected.dw, 'dW gemm');
    expectClose(read((s) => inputGradientGemm(s, dy, w, g)), expected.dx, 'dx gemm');
    expect(backend.numDataIds()).toBe(idsBefore);
    tf.dispose([x, w, dy]);
  });
});

describe('wasm kernels free their intermediates', () => {
  it('keeps numTensors and wasm buffers flat across calls', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as BackendWasm;
    const x = tf.randomNormal([4, 9, 9, 3]) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 5]) as tf.Tensor4D;
    const step = () => tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'))))([x, w]).map((g) => tf.sum(g)));
    tf.dispose(step());
    const tensors = tf.memory().numTensors;
    const ids = backend.numDataIds();
    for (let i = 0; i < 3; i++) tf.dispose(step());
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(ids);
    tf.dispose([x, w]);
  });
});

describe('one CNN training step', () => {
  it('gives the same loss and updated weights on wasm as on cpu', async () => {
    const rng = createRng(99);
    // Small batch: the cpu reference step takes ~20 s at 32.
    const batch = 8;
    const pixels = Float32Array.from({ length: batch * 784 }, () => rng());
    const labels = Array.from({ length: batch }, () => randInt(rng, 0, 9));
    const initial = await on('cpu', () => {
      const m = buildModel(3);
      const flat = getFlatWeights(m);
      m.dispose();
      return flat;
    });

    const trainOn = async (backend: 'cpu' | 'wasm') =>
      on(backend, () => {
        const model = buildModel(3);
        setFlatWeights(model, initial);
        model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
        const xs = tf.tensor4d(pixels, [batch, 28, 28, 1]);
        const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
        const before = tf.memory().numTensors;
        return model.trainOnBatch(xs, ys).then((loss) => {
          const leaked = tf.memory().numTensors - before;
          const weights = getFlatWeights(model);
          tf.dispose([xs, ys]);
          model.dispose();
          return { loss: loss as number, weights, leaked };
        });
      });

    const cpu = await trainOn('cpu');
    const wasm = await trainOn('wasm');
    expect(Math.abs(wasm.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-4);
    // Compare the updates, not the weights: the weights would match even if the step did nothing.
    const delta = (w: Float32Array) => w.map((v, i) => v - initial[i]!);
    const cpuDelta = delta(cpu.weights);
    expect(cpuDelta.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeGreaterThan(1e-4);
    expectClose(delta(wasm.weights), cpuDelta, 'weight update', 1e-3);
    expect(wasm.leaked).toBe(cpu.leaked);
  }, 120_000);
});

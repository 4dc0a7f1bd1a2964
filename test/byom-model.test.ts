import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { modelSummary } from '../services/cli/local-commands.js';
import { initBackend } from '../services/core/backend.js';
import { tf, tfl } from '../services/core/tf.js';
import { buildModel, predictProbabilities, setFlatWeights, tensorSpecsOf } from '../services/core/model.js';
import { ModelFormatError, orderWeights, readLayersModelFile, specFromTopology } from '../services/core/layers-model.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { HttpError } from '../services/http/errors.js';
import { mlp, rgbCnn, saveLayersModel } from './helpers/layers-files.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'edgefl-byom-'));

beforeAll(async () => {
  await initBackend();
});

describe('a Layers model.json as a ModelSpec', () => {
  it('reads an MLP (784 → 64 → 10) with its weights: the built model predicts exactly as the saved one', async () => {
    const original = mlp();
    const file = await saveLayersModel(original, path.join(tmp(), 'digits-mlp'));
    const { spec, weights } = readLayersModelFile(file);
    expect(spec).toMatchObject({ name: 'digits-mlp', inputShape: [28, 28, 1], classes: 10 });
    expect(spec.layers.map((l) => l.kind)).toEqual(['flatten', 'dense', 'dense']);
    const rebuilt = buildModel(1, spec);
    setFlatWeights(rebuilt, orderWeights(weights, tensorSpecsOf(spec)));
    const x = Float32Array.from({ length: 2 * 784 }, (_, i) => (i % 17) / 17);
    const expected = (original.predict(tf.tensor3d(x, [2, 28, 28])) as tf.Tensor).dataSync();
    const got = predictProbabilities(rebuilt, x, 2);
    got.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 5));
  });

  it('reads a 32x32x3 CNN and a flat [784] input (as a 28x28x1 image behind an added Flatten)', async () => {
    const cnn = readLayersModelFile(await saveLayersModel(rgbCnn(4), path.join(tmp(), 'rgb'))).spec;
    expect(cnn).toMatchObject({ inputShape: [32, 32, 3], classes: 4 });
    const flat = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [784], units: 10, activation: 'softmax', name: 'd' })] });
    const spec = specFromTopology(flat.toJSON(null, false));
    expect(spec.inputShape).toEqual([28, 28, 1]);
    expect(spec.layers[0]).toEqual({ kind: 'flatten', name: 'input_flatten' });
  });

  it('refuses a layer it cannot train, naming the layer and its type', () => {
    const m = tfl.sequential();
    m.add(tfl.layers.flatten({ inputShape: [28, 28], name: 'f' }));
    m.add(tfl.layers.batchNormalization({ name: 'bn' }));
    m.add(tfl.layers.dense({ units: 10, activation: 'softmax', name: 'out' }));
    expect(() => specFromTopology(m.toJSON(null, false))).toThrow(/layer 'bn' \(BatchNormalization\): this layer type is not supported/);
  });

  it('refuses a model whose last layer is not a softmax classifier, a non-Sequential model, quantized weights', async () => {
    const m = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [4, 4], name: 'f' }), tfl.layers.dense({ units: 3, activation: 'relu', name: 'out' })] });
    expect(() => specFromTopology(m.toJSON(null, false))).toThrow(/last layer must be a Dense layer with softmax/);
    expect(() => specFromTopology({ class_name: 'Functional', config: {} })).toThrow(/only Sequential models/);
    const file = await saveLayersModel(mlp(), path.join(tmp(), 'q'));
    const json = JSON.parse(readFileSync(file, 'utf8'));
    json.weightsManifest[0].weights[0].quantization = { dtype: 'uint8', scale: 1, min: 0 };
    writeFileSync(file, JSON.stringify(json));
    expect(() => readLayersModelFile(file)).toThrow(ModelFormatError);
    expect(() => readLayersModelFile(file)).toThrow(/quantized/);
  });
});

describe('POST /runs model field', () => {
  const refusal = (body: unknown): string => {
    try {
      parseRunConfig(body);
    } catch (e) {
      expect(e).toBeInstanceOf(HttpError);
      expect((e as HttpError).status).toBe(400);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };

  it('takes a Layers topology and stores it as a spec', () => {
    const config = parseRunConfig({ model: { modelTopology: mlp().toJSON(null, false), name: 'mlp' } });
    expect(config.model).toMatchObject({ name: 'mlp', inputShape: [28, 28, 1], classes: 10 });
  });

  it('refuses an unsupported layer with a 400 naming it', () => {
    const m = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [8, 8], name: 'f' }), tfl.layers.dense({ units: 4, name: 'd' }), tfl.layers.leakyReLU({ name: 'leaky' }), tfl.layers.dense({ units: 2, activation: 'softmax', name: 'o' })] });
    expect(refusal({ model: m.toJSON(null, false) })).toMatch(/'model': layer 'leaky' \(LeakyReLU\)/);
  });

  it('refuses a model needing a kernel the active backend lacks, naming the kernel', () => {
    const backend = tf.getBackend();
    const kernel = tf.getKernel('MaxPoolGrad', backend)!;
    tf.unregisterKernel('MaxPoolGrad', backend);
    try {
      expect(refusal({ model: rgbCnn(3).toJSON(null, false) })).toMatch(/no 'MaxPoolGrad' kernel \(layer 'p1'\)/);
      // The MLP needs no pooling: still accepted.
      expect(parseRunConfig({ model: mlp().toJSON(null, false) }).model?.classes).toBe(10);
    } finally {
      tf.registerKernel(kernel);
    }
  });

  it('refuses a spec that cannot build (duplicate layer names, classes not matching the last layer)', () => {
    const spec = { name: 'x', inputShape: [4, 4, 1], classes: 3, layers: [{ kind: 'flatten', name: 'a' }, { kind: 'dense', name: 'a', units: 3, activation: 'softmax' }] };
    expect(refusal({ model: spec })).toMatch(/used twice/);
    expect(refusal({ model: { ...spec, classes: 5, layers: [spec.layers[0], { ...spec.layers[1], name: 'b' }] } })).toMatch(/classes is 5/);
  });
});

describe('edgefl model summary --model', () => {
  it("prints the file's model, not the CNN", async () => {
    const file = await saveLayersModel(mlp(), path.join(tmp(), 'summary-mlp'));
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((s: string) => void lines.push(s));
    try {
      expect(await modelSummary(['--model', file, '--json'])).toBe(0);
    } finally {
      log.mockRestore();
    }
    const out = JSON.parse(lines[0]!);
    expect(out).toMatchObject({ name: 'summary-mlp', inputShape: [28, 28, 1], classes: 10, params: 784 * 64 + 64 + 650 });
    expect(out.layers.map((l: { name: string }) => l.name)).toEqual(['flat', 'hidden', 'out']);
  });
});

describe('model size and shape bounds', () => {
  const spec = (layers: unknown[], inputShape = [28, 28, 1]) => ({ model: { name: 'm', inputShape, classes: 2, layers } });
  const refusal = (body: unknown) => {
    try {
      parseRunConfig(body);
    } catch (e) {
      return (e as Error).message;
    }
    return 'accepted';
  };
  it('refuses a model too large to train at the edge before building anything', () => {
    const huge = spec([{ kind: 'flatten', name: 'f' }, { kind: 'dense', name: 'd', units: 65_536, activation: 'relu' }, { kind: 'dense', name: 'o', units: 2, activation: 'softmax' }], [1024, 1024, 4]);
    expect(refusal(huge)).toMatch(/more than 25,000,000 parameters \(at layer 'd'\)/);
  });
  it('refuses stacks that cannot build: a Dense before a Flatten, a window larger than its input', () => {
    expect(refusal(spec([{ kind: 'dense', name: 'o', units: 2, activation: 'softmax' }]))).toMatch(/'o' \(dense\) needs a Flatten before it/);
    expect(refusal(spec([{ kind: 'conv2d', name: 'c', filters: 2, kernelSize: 40, padding: 'valid', activation: 'relu' }, { kind: 'flatten', name: 'f' }, { kind: 'dense', name: 'o', units: 2, activation: 'softmax' }]))).toMatch(/40x40 window does not fit its 28x28 input/);
  });
});

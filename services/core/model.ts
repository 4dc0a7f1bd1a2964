import { tf, tfl } from './tf.js';
import { REFERENCE_CNN, inputSize, specKey, type LayerSpec, type ModelSpec } from './model-spec.js';
import { weightSpecs, type WeightSpec } from './forward.js';
import { scatteringLayer } from './scattering-layer.js';

/** One weight tensor of the model, in the order the model holds them (forward.ts computes them from the spec). */
export type TensorSpec = WeightSpec;

/** @deprecated the reference CNN's figures; read the run's ModelSpec (or the model: inputShapeOf, classesOf) instead. */
export const INPUT_SHAPE = REFERENCE_CNN.inputShape;
/** @deprecated see INPUT_SHAPE. */
export const NUM_CLASSES = REFERENCE_CNN.classes;
/** @deprecated see INPUT_SHAPE. */
export const PIXELS = inputSize(REFERENCE_CNN);
/** @deprecated see INPUT_SHAPE. */
export const MODEL_NAME = REFERENCE_CNN.name;

/** [H, W, C] of a built model's input, read from the model itself. */
export function inputShapeOf(model: tfl.LayersModel): [number, number, number] {
  const [, ...rest] = model.inputs[0]!.shape as number[];
  return rest.length === 3 ? (rest as [number, number, number]) : [rest[0]!, rest[1] ?? 1, 1];
}

/** Values in one input of a built model (H·W·C). */
export const inputSizeOf = (model: tfl.LayersModel): number => inputShapeOf(model).reduce((a, b) => a * b, 1);

/** Classes a built model predicts (its output width). */
export const classesOf = (model: tfl.LayersModel): number => (model.outputs[0]!.shape as number[])[1]!;

/**
 * One tfjs layer for one LayerSpec. `offset` numbers the seeded layers (conv, dense, dropout)
 * from 1, so every layer draws its own initial weights or masks and the reference CNN keeps
 * the seeds it always had.
 */
function layerFor(layer: LayerSpec, offset: number, seed: number, inputShape?: number[]) {
  const kernelInitializer = tfl.initializers.glorotUniform({ seed: seed * 100 + offset });
  const first = inputShape ? { inputShape } : {};
  switch (layer.kind) {
    case 'conv2d':
      return tfl.layers.conv2d({ ...first, name: layer.name, filters: layer.filters, kernelSize: layer.kernelSize, strides: layer.strides ?? 1, activation: layer.activation, padding: layer.padding, kernelInitializer });
    case 'maxPooling2d':
      return tfl.layers.maxPooling2d({ ...first, name: layer.name, poolSize: layer.poolSize, strides: layer.strides ?? layer.poolSize });
    case 'dropout':
      return tfl.layers.dropout({ ...first, name: layer.name, rate: layer.rate, seed: seed * 100 + offset });
    case 'flatten':
      return tfl.layers.flatten({ ...first, name: layer.name });
    case 'dense':
      return tfl.layers.dense({ ...first, name: layer.name, units: layer.units, activation: layer.activation, kernelInitializer });
    case 'scattering':
      return scatteringLayer(layer, inputShape);
  }
}

/** A tfjs Sequential model for a spec (the reference CNN unless told otherwise), seeded initial weights. */
export function buildModel(seed = 1, spec: ModelSpec = REFERENCE_CNN): tfl.Sequential {
  const model = tfl.sequential({ name: spec === REFERENCE_CNN ? 'edgefl_cnn' : `edgefl_${spec.name}` });
  let seeded = 0;
  spec.layers.forEach((layer, i) => {
    if (layer.kind === 'conv2d' || layer.kind === 'dense' || layer.kind === 'dropout') seeded++;
    model.add(layerFor(layer, seeded, seed, i === 0 ? [...spec.inputShape] : undefined));
  });
  return model;
}

/**
 * The seed of one training step's dropout masks, from (run seed, node, round, step): every
 * step on every node in every round draws fresh masks, and the same tuple draws the same
 * ones (FNV-1a over the tuple, so nearby tuples do not give nearby seeds).
 */
export function dropoutStepSeed(runSeed: number, node: string, round: number, step: number): number {
  let h = 0x811c9dc5;
  for (const ch of `${runSeed}|${node}|${round}|${step}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 1; // a non-negative 31-bit integer
}

/**
 * Reseeds every dropout layer for the next step. tfjs's Dropout hands its `seed` to
 * tf.dropout on every call, which re-seeds its generator each time: a seed fixed at
 * build time means the same mask on every step. The field is read at call time, so
 * setting it before each step is enough (each layer gets its own offset).
 */
export function seedDropout(model: tfl.LayersModel, seed: number): void {
  model.layers.forEach((layer, i) => {
    if (layer.getClassName() === 'Dropout') (layer as unknown as { seed?: number }).seed = (seed + i * 7919) % 2 ** 31;
  });
}

/** Weight names are "<layer>/<kernel|bias>", independent of tfjs's global name counters. */
export function modelSpec(model: tfl.LayersModel): TensorSpec[] {
  return model.layers.flatMap((layer) =>
    layer.weights.map((w) => ({ name: `${layer.name}/${w.originalName.split('/').pop()}`, shape: [...w.shape] as number[] })),
  );
}

const manifests = new Map<string, TensorSpec[]>();
/**
 * A spec's weight manifest, computed once per distinct spec from its shapes (no model is
 * built, so the aggregator's codec checks never load tfjs-layers); what every decoded update
 * of a run is checked against.
 */
export function tensorSpecsOf(spec: ModelSpec): TensorSpec[] {
  const key = specKey(spec);
  let tensors = manifests.get(key);
  if (!tensors) manifests.set(key, (tensors = weightSpecs(spec)));
  return tensors;
}

/** The reference CNN's manifest. */
export const referenceModelSpec = (): TensorSpec[] => tensorSpecsOf(REFERENCE_CNN);

export function specSize(spec: readonly TensorSpec[]): number {
  return spec.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}

export function countParams(model: tfl.LayersModel): number {
  return model.countParams();
}

/** All weights as one flat vector, the unit FedAvg and the codec work on. */
export function getFlatWeights(model: tfl.LayersModel): Float32Array {
  const weights = model.getWeights();
  const flat = new Float32Array(weights.reduce((n, w) => n + w.size, 0));
  let at = 0;
  for (const w of weights) {
    const v = w.dataSync() as Float32Array;
    flat.set(v, at);
    at += v.length;
  }
  return flat;
}

export function setFlatWeights(model: tfl.LayersModel, flat: Float32Array): void {
  const current = model.getWeights();
  const expected = current.reduce((n, w) => n + w.size, 0);
  if (flat.length !== expected) throw new Error(`weight vector has ${flat.length} values, model needs ${expected}`);
  let at = 0;
  const next = current.map((w) => {
    const t = tf.tensor(flat.slice(at, at + w.size), w.shape, 'float32');
    at += w.size;
    return t;
  });
  model.setWeights(next);
  tf.dispose(next);
}

/** Normalised [0,1] pixels (N·H·W·C) to an NHWC input tensor of this shape (the reference CNN's unless told). */
export function toInputTensor(pixels: Float32Array, count: number, shape: readonly [number, number, number] = REFERENCE_CNN.inputShape): tf.Tensor4D {
  return tf.tensor4d(pixels, [count, ...shape]);
}

/**
 * Predicts in chunks so a 10,000-image request does not build one giant activation: the
 * wasm heap never shrinks, so the largest chunk sets the serving function's memory for good
 * (256 images: ~19 MB of conv1 output, against ~75 MB at 1,024).
 */
export function predictProbabilities(model: tfl.LayersModel, pixels: Float32Array, count: number, chunk = 256): Float32Array {
  const shape = inputShapeOf(model);
  const [size, classes] = [inputSizeOf(model), classesOf(model)];
  const out = new Float32Array(count * classes);
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const probs = tf.tidy(() => model.predict(toInputTensor(pixels.subarray(start * size, (start + n) * size), n, shape)) as tf.Tensor);
    out.set(probs.dataSync() as Float32Array, start * classes);
    probs.dispose();
  }
  return out;
}

export function argmaxRows(probs: Float32Array, classes: number = REFERENCE_CNN.classes): number[] {
  const out: number[] = [];
  for (let r = 0; r * classes < probs.length; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (probs[r * classes + c]! > probs[r * classes + best]!) best = c;
    out.push(best);
  }
  return out;
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  samples: number;
}

/** Accuracy and mean cross-entropy of the model on a labelled set. */
export function evaluate(model: tfl.LayersModel, pixels: Float32Array, labels: Uint8Array, chunk = 1000): EvalResult {
  const probs = predictProbabilities(model, pixels, labels.length, chunk);
  let correct = 0;
  let loss = 0;
  const classes = classesOf(model);
  const predicted = argmaxRows(probs, classes);
  for (let i = 0; i < labels.length; i++) {
    if (predicted[i] === labels[i]) correct++;
    loss -= Math.log(Math.max(probs[i * classes + labels[i]!]!, 1e-7));
  }
  return { accuracy: correct / labels.length, loss: loss / labels.length, samples: labels.length };
}

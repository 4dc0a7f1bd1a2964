import { tf, tfl } from './tf.js';

/** One weight tensor of the model, in the order the model holds them. */
export interface TensorSpec {
  name: string;
  shape: number[];
}

export const INPUT_SHAPE = [28, 28, 1] as const;
export const NUM_CLASSES = 10;
export const PIXELS = 28 * 28;
export const MODEL_NAME = 'mnist';

/**
 * The reference CNN of the seed paper: Conv(32,5x5) -> MaxPool -> Dropout(.25) ->
 * Conv(64,5x5) -> MaxPool -> Flatten -> Dense(256) -> Dropout(.25) -> Dense(10),
 * valid padding, 317,066 parameters. Layer names are fixed because weight names in
 * the codec manifest derive from them and every node must agree on them.
 */
export function buildModel(seed = 1): tfl.Sequential {
  const init = (offset: number) => tfl.initializers.glorotUniform({ seed: seed * 100 + offset });
  const model = tfl.sequential({ name: 'edgefl_cnn' });
  model.add(tfl.layers.conv2d({ name: 'conv1', inputShape: [...INPUT_SHAPE], filters: 32, kernelSize: 5, activation: 'relu', padding: 'valid', kernelInitializer: init(1) }));
  model.add(tfl.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }));
  model.add(tfl.layers.dropout({ name: 'drop1', rate: 0.25, seed: seed * 100 + 2 }));
  model.add(tfl.layers.conv2d({ name: 'conv2', filters: 64, kernelSize: 5, activation: 'relu', padding: 'valid', kernelInitializer: init(3) }));
  model.add(tfl.layers.maxPooling2d({ name: 'pool2', poolSize: 2 }));
  model.add(tfl.layers.flatten({ name: 'flatten' }));
  model.add(tfl.layers.dense({ name: 'dense1', units: 256, activation: 'relu', kernelInitializer: init(4) }));
  model.add(tfl.layers.dropout({ name: 'drop2', rate: 0.25, seed: seed * 100 + 5 }));
  model.add(tfl.layers.dense({ name: 'dense2', units: NUM_CLASSES, activation: 'softmax', kernelInitializer: init(6) }));
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

let referenceSpec: TensorSpec[] | undefined;
/** The CNN's manifest, built once; what every decoded update is checked against. */
export function referenceModelSpec(): TensorSpec[] {
  if (!referenceSpec) {
    const m = buildModel();
    referenceSpec = modelSpec(m);
    m.dispose();
  }
  return referenceSpec;
}

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

/** Normalised [0,1] pixels (N*784) to the model's NHWC input tensor. */
export function toInputTensor(pixels: Float32Array, count: number): tf.Tensor4D {
  return tf.tensor4d(pixels, [count, ...INPUT_SHAPE]);
}

/**
 * Predicts in chunks so a 10,000-image request does not build one giant activation: the
 * wasm heap never shrinks, so the largest chunk sets the serving function's memory for good
 * (256 images: ~19 MB of conv1 output, against ~75 MB at 1,024).
 */
export function predictProbabilities(model: tfl.LayersModel, pixels: Float32Array, count: number, chunk = 256): Float32Array {
  const out = new Float32Array(count * NUM_CLASSES);
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const probs = tf.tidy(() => model.predict(toInputTensor(pixels.subarray(start * PIXELS, (start + n) * PIXELS), n)) as tf.Tensor);
    out.set(probs.dataSync() as Float32Array, start * NUM_CLASSES);
    probs.dispose();
  }
  return out;
}

export function argmaxRows(probs: Float32Array, classes = NUM_CLASSES): number[] {
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
  const predicted = argmaxRows(probs);
  for (let i = 0; i < labels.length; i++) {
    if (predicted[i] === labels[i]) correct++;
    loss -= Math.log(Math.max(probs[i * NUM_CLASSES + labels[i]!]!, 1e-7));
  }
  return { accuracy: correct / labels.length, loss: loss / labels.length, samples: labels.length };
}

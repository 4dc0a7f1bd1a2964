import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { LayerSpec, ModelSpec, Activation } from './model-spec.js';
import { parseModelSpec } from './model-spec-schema.js';

/**
 * A TensorFlow.js Layers model (model.json from tensorflowjs_converter or tfjs's own save) as
 * a ModelSpec plus its weights. Only the layers edgefl can train, serve and average are taken;
 * anything else is refused here, naming the layer, so a run never starts with a model that
 * would fail mid-round.
 */
export class ModelFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFormatError';
  }
}

export const SUPPORTED_LAYERS = ['InputLayer', 'Dense', 'Conv2D', 'MaxPooling2D', 'Flatten', 'Dropout'] as const;

type Json = Record<string, unknown>;
interface KerasLayer {
  class_name: string;
  config: Json;
}

const ACTIVATIONS: readonly Activation[] = ['relu', 'softmax', 'linear', 'tanh', 'sigmoid'];

function refuse(layer: KerasLayer, why: string): never {
  throw new ModelFormatError(`layer '${String(layer.config.name ?? '?')}' (${layer.class_name}): ${why}`);
}

function activationOf(layer: KerasLayer): Activation {
  const a = layer.config.activation ?? 'linear';
  if (typeof a !== 'string' || !(ACTIVATIONS as readonly string[]).includes(a)) refuse(layer, `activation '${JSON.stringify(a)}' is not one of ${ACTIVATIONS.join(', ')}`);
  return a as Activation;
}

/** A Keras [k, k] pair (or a bare number) as one side; non-square windows are refused. */
function square(layer: KerasLayer, field: string, fallback?: number): number {
  const v = layer.config[field] ?? fallback;
  const pair = Array.isArray(v) ? v : [v, v];
  if (pair.length !== 2 || pair[0] !== pair[1] || !Number.isInteger(pair[0])) refuse(layer, `${field} ${JSON.stringify(v)} must be a square window (k or [k, k])`);
  return pair[0] as number;
}

function requireBias(layer: KerasLayer): void {
  if (layer.config.use_bias === false) refuse(layer, 'use_bias=false is not supported (every Dense/Conv2D layer carries a bias)');
}

function layerSpecOf(layer: KerasLayer): LayerSpec | undefined {
  const name = String(layer.config.name ?? '');
  const c = layer.config;
  switch (layer.class_name) {
    case 'InputLayer':
      return undefined;
    case 'Dense':
      requireBias(layer);
      return { kind: 'dense', name, units: Number(c.units), activation: activationOf(layer) };
    case 'Conv2D': {
      requireBias(layer);
      if (c.data_format && c.data_format !== 'channels_last') refuse(layer, `data_format '${String(c.data_format)}' is not supported; use channels_last`);
      if (square(layer, 'dilation_rate', 1) !== 1) refuse(layer, 'dilated convolutions are not supported');
      const padding = c.padding ?? 'valid';
      if (padding !== 'valid' && padding !== 'same') refuse(layer, `padding '${String(padding)}' is not supported`);
      return { kind: 'conv2d', name, filters: Number(c.filters), kernelSize: square(layer, 'kernel_size'), strides: square(layer, 'strides', 1), padding, activation: activationOf(layer) };
    }
    case 'MaxPooling2D':
    case 'MaxPool2D': {
      if ((c.padding ?? 'valid') !== 'valid') refuse(layer, `padding '${String(c.padding)}' is not supported for pooling; use valid`);
      const poolSize = square(layer, 'pool_size', 2);
      return { kind: 'maxPooling2d', name, poolSize, strides: c.strides == null ? poolSize : square(layer, 'strides') };
    }
    case 'Flatten':
      return { kind: 'flatten', name };
    case 'Dropout':
      return { kind: 'dropout', name, rate: Number(c.rate) };
    default:
      return refuse(layer, `this layer type is not supported; edgefl trains ${SUPPORTED_LAYERS.join(', ')}`);
  }
}

/** The declared input of the first layer without the batch axis ([H,W,C], [H,W] or [P]). */
function declaredInput(layers: KerasLayer[]): number[] {
  const first = layers[0]!;
  const shape = (first.config.batch_input_shape ?? first.config.batch_shape) as unknown;
  if (!Array.isArray(shape) || shape.length < 2) refuse(first, 'the first layer declares no input shape (batch_input_shape)');
  const dims = shape.slice(1);
  if (!dims.every((d) => Number.isInteger(d) && d > 0)) refuse(first, `input shape ${JSON.stringify(shape)} must have fixed positive sizes after the batch axis`);
  return dims as number[];
}

/** Converts a Layers model topology (model.json's modelTopology) into a ModelSpec. */
export function specFromTopology(topology: unknown, name = 'model'): ModelSpec {
  const t = (topology ?? {}) as Json;
  const root = (t.model_config ?? t) as Json; // Keras's own JSON nests under model_config
  if (root.class_name !== 'Sequential') {
    throw new ModelFormatError(`the model is a ${String(root.class_name ?? 'unknown kind of model')}; only Sequential models (one chain of layers) are supported`);
  }
  const layers = ((root.config as Json | undefined)?.layers ?? []) as KerasLayer[];
  if (!Array.isArray(layers) || layers.length === 0) throw new ModelFormatError('the Sequential model has no layers');
  const input = declaredInput(layers);
  const specs = layers.map(layerSpecOf).filter((l): l is LayerSpec => l !== undefined);
  let inputShape: [number, number, number];
  if (input.length === 3) inputShape = input as [number, number, number];
  else if (input.length === 2) inputShape = [input[0]!, input[1]!, 1];
  else if (input.length === 1) {
    // A flat vector: a square image when it is one (784 = 28x28), so the image route can resize to it.
    const side = Math.round(Math.sqrt(input[0]!));
    inputShape = side * side === input[0] ? [side, side, 1] : [1, input[0]!, 1];
  } else throw new ModelFormatError(`input shape [${input.join(', ')}] is not supported: expected [H, W, C], [H, W] or [P]`);
  // Rank-2/3 inputs only reach the model through a Flatten; one is added for a flat-vector input.
  if (input.length !== 3 && specs[0]?.kind !== 'flatten') {
    if (input.length === 2) throw new ModelFormatError(`input shape [${input.join(', ')}] needs a Flatten as the first layer`);
    specs.unshift({ kind: 'flatten', name: 'input_flatten' });
  }
  const last = specs[specs.length - 1];
  const parsed = parseModelSpec({ name, inputShape, classes: last?.kind === 'dense' ? last.units : 0, layers: specs });
  if ('error' in parsed) throw new ModelFormatError(parsed.error);
  return parsed.spec;
}

interface WeightEntry {
  name: string;
  shape: number[];
  dtype?: string;
  quantization?: unknown;
}

/** Every weight of a model.json by its name, read from the weight files next to it. */
export function readWeightFiles(modelFile: string, manifest: unknown): Map<string, { shape: number[]; values: Float32Array }> {
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  if (!Array.isArray(manifest)) return out;
  for (const group of manifest as { paths: string[]; weights: WeightEntry[] }[]) {
    const bytes = Buffer.concat(group.paths.map((p) => readFileSync(resolve(dirname(modelFile), p))));
    let at = 0;
    for (const w of group.weights) {
      if (w.quantization) throw new ModelFormatError(`weight '${w.name}' is quantized; convert the model without --quantize`);
      if ((w.dtype ?? 'float32') !== 'float32') throw new ModelFormatError(`weight '${w.name}' is ${w.dtype}; only float32 weights are supported`);
      const size = w.shape.reduce((a, b) => a * b, 1);
      if (at + size * 4 > bytes.length) throw new ModelFormatError(`weight files of ${modelFile} end before weight '${w.name}'`);
      const values = new Float32Array(size);
      for (let i = 0; i < size; i++) values[i] = bytes.readFloatLE(at + i * 4);
      out.set(w.name, { shape: w.shape, values });
      at += size * 4;
    }
  }
  return out;
}

/**
 * The weights in the order the model holds them (`tensors`, from model.ts's modelSpec). A
 * converted Keras model names them "<layer>/kernel" or "<scope>/<layer>/kernel"; both match.
 */
export function orderWeights(byName: Map<string, { shape: number[]; values: Float32Array }>, tensors: readonly { name: string; shape: number[] }[]): Float32Array {
  const total = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  const flat = new Float32Array(total);
  let at = 0;
  for (const t of tensors) {
    const found = byName.get(t.name) ?? [...byName.entries()].find(([n]) => n.endsWith(`/${t.name}`))?.[1];
    if (!found) throw new ModelFormatError(`the weight files hold no '${t.name}'`);
    if (found.shape.join('x') !== t.shape.join('x')) throw new ModelFormatError(`weight '${t.name}' has shape [${found.shape}], the layer needs [${t.shape}]`);
    flat.set(found.values, at);
    at += found.values.length;
  }
  return flat;
}

export interface LayersModelFile {
  spec: ModelSpec;
  /** The weights by name; empty when the file has no weightsManifest (then the run seeds fresh ones). */
  weights: Map<string, { shape: number[]; values: Float32Array }>;
}

/** Reads a model.json (and its weight files) into a spec; the name defaults to the file's directory name. */
export function readLayersModelFile(file: string, name?: string): LayersModelFile {
  let json: Json;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Json;
  } catch (e) {
    throw new ModelFormatError(`${file}: ${(e as Error).message}`);
  }
  if (!json.modelTopology) throw new ModelFormatError(`${file}: no modelTopology; expected a TensorFlow.js Layers model.json (format 'layers-model')`);
  const fallback = (dirname(resolve(file)).split('/').pop() ?? 'model').replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64) || 'model';
  try {
    return { spec: specFromTopology(json.modelTopology, name ?? fallback), weights: readWeightFiles(file, json.weightsManifest) };
  } catch (e) {
    if (e instanceof ModelFormatError) throw new ModelFormatError(`${file}: ${e.message}`);
    throw e;
  }
}

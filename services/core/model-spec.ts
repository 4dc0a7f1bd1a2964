/**
 * The model as data: an input shape, a number of classes and a stack of layers. Everything
 * that builds, trains, serves or validates input for a model reads it from here, so a
 * user's own model (a converted Keras / TensorFlow.js Layers model.json) plugs in as another
 * ModelSpec rather than as new constants.
 */
export type Activation = 'relu' | 'softmax' | 'linear' | 'tanh' | 'sigmoid';

export type LayerSpec =
  | { kind: 'conv2d'; name: string; filters: number; kernelSize: number; strides?: number; padding: 'valid' | 'same'; activation: Activation }
  | { kind: 'maxPooling2d'; name: string; poolSize: number; strides?: number }
  | { kind: 'dropout'; name: string; rate: number }
  | { kind: 'flatten'; name: string }
  | { kind: 'dense'; name: string; units: number; activation: Activation }
  /** Fixed wavelet scattering features (scattering.ts): no weights; J scales, L orientations, optional per-example GroupNorm. */
  | { kind: 'scattering'; name: string; J: number; L: number; groups?: number };

export interface ModelSpec {
  /** The name the serving protocols publish (TF Serving's model name, V2's model id). */
  name: string;
  /** Height, width, channels of one input image (NHWC without the batch). */
  inputShape: readonly [number, number, number];
  classes: number;
  layers: readonly LayerSpec[];
  /**
   * How the image route turns a photo into this model's input, unless a request says otherwise:
   * invert (auto: when the border is light, as for digits drawn on paper) and preprocess (mnist:
   * centre the digit by its mass, as MNIST was made; resize: the whole image, as for photos).
   * Unset: auto + mnist for grayscale models, false + resize for colour ones.
   */
  image?: { invert?: 'auto' | 'true' | 'false'; preprocess?: 'mnist' | 'resize' };
}

/**
 * The reference CNN of the seed paper: Conv(32,5x5) -> MaxPool -> Dropout(.25) ->
 * Conv(64,5x5) -> MaxPool -> Flatten -> Dense(256) -> Dropout(.25) -> Dense(10),
 * valid padding, 317,066 parameters. Layer names are fixed because weight names in
 * the codec manifest derive from them and every node must agree on them.
 */
export const REFERENCE_CNN: ModelSpec = {
  name: 'mnist',
  inputShape: [28, 28, 1],
  classes: 10,
  layers: [
    { kind: 'conv2d', name: 'conv1', filters: 32, kernelSize: 5, padding: 'valid', activation: 'relu' },
    { kind: 'maxPooling2d', name: 'pool1', poolSize: 2 },
    { kind: 'dropout', name: 'drop1', rate: 0.25 },
    { kind: 'conv2d', name: 'conv2', filters: 64, kernelSize: 5, padding: 'valid', activation: 'relu' },
    { kind: 'maxPooling2d', name: 'pool2', poolSize: 2 },
    { kind: 'flatten', name: 'flatten' },
    { kind: 'dense', name: 'dense1', units: 256, activation: 'relu' },
    { kind: 'dropout', name: 'drop2', rate: 0.25 },
    { kind: 'dense', name: 'dense2', units: 10, activation: 'softmax' },
  ],
};

/** A conv or pooling layer's window: its size, its stride (a pooling layer's defaults to its size) and whether it pads 'same'. */
export function windowOf(l: Extract<LayerSpec, { kind: 'conv2d' | 'maxPooling2d' }>): { size: number; stride: number; same: boolean } {
  return l.kind === 'conv2d' ? { size: l.kernelSize, stride: l.strides ?? 1, same: l.padding === 'same' } : { size: l.poolSize, stride: l.strides ?? l.poolSize, same: false };
}

/** How many positions that window takes along a side of `n` (TensorFlow's 'valid' and 'same' padding). */
export function slideSize(n: number, w: { size: number; stride: number; same: boolean }): number {
  return w.same ? Math.ceil(n / w.stride) : Math.floor((n - w.size) / w.stride) + 1;
}

/** Values in one input image (H·W·C). */
export const inputSize = (spec: ModelSpec): number => spec.inputShape[0] * spec.inputShape[1] * spec.inputShape[2];

/** Classes of the model's output (its last Dense layer's units). */
export const numClasses = (spec: ModelSpec): number => spec.classes;

/** One string per distinct model, to cache built models and tensor manifests by. */
export const specKey = (spec: ModelSpec): string => JSON.stringify([spec.inputShape, spec.classes, spec.layers]);

/** The input shape as the serving protocols publish it: [-1, H, W, C]. */
export const batchInputShape = (spec: ModelSpec): number[] => [-1, ...spec.inputShape];

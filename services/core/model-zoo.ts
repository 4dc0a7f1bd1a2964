/**
 * Built-in model specs beside the reference CNN, by name: what `--model <name>` picks.
 *
 * dp-cnn is the small tanh CNN that DP-SGD papers train on MNIST (Papernot et al. 2020,
 * "Tempered sigmoid activations"; Opacus's MNIST example): 26,010 parameters against the
 * reference CNN's 317,066. DP-SGD adds noise of norm σC·√d to every step, d the number of
 * parameters, while the clipped signal stays within C: a model 12x smaller keeps 3.5x more
 * signal per step. tanh keeps activations bounded, so clipping cuts less of each gradient's
 * direction than ReLU's unbounded activations do. No dropout: DP noise already regularises.
 */
import { REFERENCE_CNN, type LayerSpec, type ModelSpec } from './model-spec.js';

/** A model of 28x28 grayscale digits in 10 classes, published as 'mnist'. */
const digitsModel = (layers: LayerSpec[]): ModelSpec => ({ name: 'mnist', inputShape: [28, 28, 1], classes: 10, layers });

export const DP_CNN: ModelSpec = {
  name: 'mnist',
  inputShape: [28, 28, 1],
  classes: 10,
  layers: [
    { kind: 'conv2d', name: 'conv1', filters: 16, kernelSize: 8, strides: 2, padding: 'same', activation: 'tanh' },
    { kind: 'maxPooling2d', name: 'pool1', poolSize: 2, strides: 1 },
    { kind: 'conv2d', name: 'conv2', filters: 32, kernelSize: 4, strides: 2, padding: 'valid', activation: 'tanh' },
    { kind: 'maxPooling2d', name: 'pool2', poolSize: 2, strides: 1 },
    { kind: 'flatten', name: 'flatten' },
    { kind: 'dense', name: 'dense1', units: 32, activation: 'tanh' },
    { kind: 'dense', name: 'dense2', units: 10, activation: 'softmax' },
  ],
};

/**
 * Tramèr & Boneh (2021)'s ScatterNet + linear model: fixed scattering features (J = 2, L = 8:
 * 81 channels at 7x7 on a digit, scattering.ts), normalised per example in 27 groups of 3
 * channels (GroupNorm without learned scale, so it costs no privacy), then one softmax layer:
 * 39,700 parameters, all of them in a convex problem.
 */
const SCATTERING: LayerSpec = { kind: 'scattering', name: 'scatter', J: 2, L: 8, groups: 27 };
export const SCATTER_LINEAR = digitsModel([SCATTERING, { kind: 'flatten', name: 'flatten' }, { kind: 'dense', name: 'dense1', units: 10, activation: 'softmax' }]);

/** The same features under a small tanh CNN (their ScatterNet + CNN, scaled to digits): 32,938 parameters. */
export const SCATTER_CNN = digitsModel([
  SCATTERING,
  { kind: 'conv2d', name: 'conv1', filters: 32, kernelSize: 3, padding: 'same', activation: 'tanh' },
  { kind: 'maxPooling2d', name: 'pool1', poolSize: 2 },
  { kind: 'flatten', name: 'flatten' },
  { kind: 'dense', name: 'dense1', units: 32, activation: 'tanh' },
  { kind: 'dense', name: 'dense2', units: 10, activation: 'softmax' },
]);

export const BUILTIN_MODELS: Readonly<Record<string, ModelSpec>> = { reference: REFERENCE_CNN, 'dp-cnn': DP_CNN, 'scatter-linear': SCATTER_LINEAR, 'scatter-cnn': SCATTER_CNN };

/** A built-in spec by name, or undefined. */
export const builtinModel = (name: string): ModelSpec | undefined => (Object.hasOwn(BUILTIN_MODELS, name) ? BUILTIN_MODELS[name] : undefined);

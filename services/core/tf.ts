/**
 * The one place edgefl imports TensorFlow.js from. tfjs-node (when installed) registers
 * its backend into this same tfjs-core instance, so every module shares one engine.
 */
import { createRequire } from 'node:module';
import type * as Core from '@tensorflow/tfjs-core';
import type * as Layers from '@tensorflow/tfjs-layers';

/**
 * The packages are CommonJS bundles: require() compiles each once, where an ESM import would
 * first scan it for module syntax and export names (about 50 ms of a cold start for tfjs-core
 * and the cpu backend together). The types come from the same package.
 */
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs-core') as typeof Core;
// The cpu backend (the last fallback, and what tests check the wasm kernels against) loads when first
// chosen: a serving function on wasm never pays its 3-5 MiB of RSS. Its own registration, when the
// package loads inside this factory, finds the name taken and keeps this one (silently under PROD).
tf.registerBackend('cpu', () => new (require('@tensorflow/tfjs-backend-cpu') as typeof import('@tensorflow/tfjs-backend-cpu')).MathBackendCPU(), 1);
// eslint-disable-next-line @typescript-eslint/no-namespace
declare namespace tf {
  type Tensor<R extends Core.Rank = Core.Rank> = Core.Tensor<R>;
  type Tensor1D = Core.Tensor1D;
  type Tensor2D = Core.Tensor2D;
  type Tensor3D = Core.Tensor3D;
  type Tensor4D = Core.Tensor4D;
  type Scalar = Core.Scalar;
  type Variable<R extends Core.Rank = Core.Rank> = Core.Variable<R>;
  type Optimizer = Core.Optimizer;
  type Rank = Core.Rank;
  type NamedTensorMap = Core.NamedTensorMap;
}

/**
 * tfjs-layers loads on first use, not at import: serving predicts with the spec's forward pass
 * on core ops (forward.ts) and never touches it, which saves a serving function about 13 MiB
 * of RSS and 60 ms of cold start. Node resolves the package to its CommonJS build whether
 * imported or required, so this is the same module instance, on the same tfjs-core engine.
 */
let layers: typeof Layers | undefined;
const loadLayers = (): typeof Layers => (layers ??= require('@tensorflow/tfjs-layers') as typeof Layers);
const tfl = new Proxy({} as typeof Layers, { get: (_, key) => loadLayers()[key as keyof typeof Layers] });
// eslint-disable-next-line @typescript-eslint/no-namespace
declare namespace tfl {
  type LayersModel = Layers.LayersModel;
  type Sequential = Layers.Sequential;
}

/**
 * tfjs-core's CommonJS build registers no gradient functions; tfjs-layers' bundle does. So the
 * first gradient lookup that misses loads it (only while recording a tape, i.e. training or
 * tf.grads: inference never looks one up).
 */
const gradients = (globalThis as { _tfGlobals?: Map<string, unknown> })._tfGlobals?.get('gradRegistry') as Map<string, unknown> | undefined;
if (gradients) {
  const get = gradients.get.bind(gradients);
  gradients.get = (name: string) => get(name) ?? (layers ? undefined : (loadLayers(), get(name)));
}

/** Whether anything in this process has used tfjs-layers yet (serving must not). */
export const layersLoaded = (): boolean => layers !== undefined;

export { tf, tfl };

// PROD silences tfjs's console banners (we log the chosen backend ourselves) and skips dev-only checks.
tf.env().set('PROD', true);

/**
 * The one place edgefl imports TensorFlow.js from. tfjs-node (when installed) registers
 * its backend into this same tfjs-core instance, so every module shares one engine.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import type * as Layers from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';

/**
 * tfjs-layers loads on first use, not at import: serving predicts with the spec's forward pass
 * on core ops (forward.ts) and never touches it, which saves a serving function about 13 MiB
 * of RSS and 60 ms of cold start. Node resolves the package to its CommonJS build whether
 * imported or required, so this is the same module instance, on the same tfjs-core engine.
 */
const require = createRequire(import.meta.url);
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

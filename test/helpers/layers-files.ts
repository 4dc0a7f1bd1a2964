import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tf, tfl } from '../../services/core/tf.js';

/**
 * Saves a tfjs-layers model as tensorflowjs_converter lays it out: model.json (format
 * layers-model, topology + weightsManifest) beside one binary weight file.
 */
export async function saveLayersModel(model: tfl.LayersModel, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'model.json');
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.from(a.weightData as ArrayBuffer));
      const json = { format: 'layers-model', generatedBy: 'test', convertedBy: null, modelTopology: a.modelTopology, weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: a.weightSpecs }] };
      writeFileSync(file, JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return file;
}

/** The multilayer perceptron of the issue: 784 → 64 → 10, as a Keras user would write it (Flatten of a 28x28 input). */
export function mlp(hidden = 64, seed = 5): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.flatten({ inputShape: [28, 28], name: 'flat' }));
  m.add(tfl.layers.dense({ units: hidden, activation: 'relu', name: 'hidden', kernelInitializer: tfl.initializers.glorotUniform({ seed }) }));
  m.add(tfl.layers.dense({ units: 10, activation: 'softmax', name: 'out', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }));
  return m;
}

/** A small colour CNN over 32x32x3 images. */
export function rgbCnn(classes: number): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [32, 32, 3], filters: 8, kernelSize: 3, activation: 'relu', name: 'c1' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'p1' }));
  m.add(tfl.layers.flatten({ name: 'f' }));
  m.add(tfl.layers.dense({ units: classes, activation: 'softmax', name: 'out' }));
  return m;
}

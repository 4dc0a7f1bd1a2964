/**
 * Non-private training of a model whose first layer is fixed features (a scattering layer):
 * the layers after it, as a model of their own sharing the same layer objects (so the same
 * weights), trained on the shard's features, computed once per shard (fixed-features.ts's
 * cache) instead of once per batch of every epoch. The head is built once per model.
 */
import { tfl } from './tf.js';
import type { ImageSet } from '../../datasets/types.js';
import { scatteringOutputShape } from './scattering.js';
import { scatteringParamsOf } from './scattering-layer.js';
import { inputShapeOf } from './model.js';
import { scatteringFeatures } from './privacy/fixed-features.js';

const heads = new WeakMap<tfl.LayersModel, tfl.LayersModel>();

/** The model after its fixed feature layer and the shard as that head's input; undefined for any other model. */
export function featureHead(model: tfl.LayersModel, data: ImageSet): { model: tfl.LayersModel; data: ImageSet } | undefined {
  const params = model.layers[0] ? scatteringParamsOf(model.layers[0]) : undefined;
  if (!params) return undefined;
  const input = inputShapeOf(model);
  const shape = scatteringOutputShape(input, params);
  let head = heads.get(model);
  if (!head) {
    const x = tfl.input({ shape });
    const out = model.layers.slice(1).reduce((h, layer) => layer.apply(h) as ReturnType<typeof tfl.input>, x);
    heads.set(model, (head = tfl.model({ inputs: x, outputs: out })));
  }
  const images = scatteringFeatures(data, input, params);
  return { model: head, data: { ...data, images, rows: shape[0], cols: shape[1], channels: shape[2] } };
}

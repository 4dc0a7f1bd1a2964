/**
 * A model whose first layer is fixed features (a scattering layer: no weights, filters from
 * (J, L) alone) trains, under DP-SGD, as the layers after it on the shard's features. Nothing
 * is differentiated through the features and they depend on each record alone, so computing
 * them once per shard, before any sampling, changes neither the gradients nor the mechanism:
 * the per-example gradients, clipping, noise and accounting are those of the head's weights,
 * which are all the model's weights.
 *
 * Features are cached per shard (the pixel array's identity) and layer settings: a node's shard
 * object lives across rounds (the trainer's shard cache, the bench's shards), so each record's
 * features are computed once per process, not once per round.
 */
import { tf } from '../tf.js';
import type { ImageSet } from '../../../datasets/types.js';
import { scatteringOutputShape } from '../scattering.js';
import { scatter, type ScatteringLayerParams } from '../scattering-op.js';
import { inputShapeFor, withInputShape, type Op } from './ops.js';

const cache = new WeakMap<Float32Array, Map<string, Float32Array>>();

/** Features of every image of `set`, [count, h, w, c] flattened, computed 256 images at a time. */
export function scatteringFeatures(set: ImageSet, inputShape: readonly [number, number, number], params: ScatteringLayerParams): Float32Array {
  const key = JSON.stringify([inputShape, params.J, params.L, params.groups ?? 0]);
  let byParams = cache.get(set.images);
  const hit = byParams?.get(key);
  if (hit) return hit;
  const pixels = inputShape[0] * inputShape[1] * inputShape[2];
  const size = scatteringOutputShape(inputShape, params).reduce((a, b) => a * b, 1);
  const out = new Float32Array(set.count * size);
  for (let at = 0; at < set.count; at += 256) {
    const n = Math.min(256, set.count - at);
    const t = tf.tidy(() => scatter(tf.tensor4d(set.images.subarray(at * pixels, (at + n) * pixels), [n, ...inputShape]), params));
    out.set(t.dataSync() as Float32Array, at * size);
    t.dispose();
  }
  if (!byParams) cache.set(set.images, (byParams = new Map()));
  byParams.set(key, out);
  return out;
}

/**
 * The ops DP-SGD traces and the data it samples from: unchanged without a leading feature
 * layer; otherwise the layers after it, on the shard's (cached) features.
 */
export function fixedFeatureStage(ops: readonly Op[], data: ImageSet): { ops: readonly Op[]; data: ImageSet; inputSize: number } {
  const shape = inputShapeFor(ops);
  const first = ops[0];
  if (first?.kind !== 'scatter') return { ops, data, inputSize: shape[0] * shape[1] * shape[2] };
  if (ops.slice(1).some((o) => o.kind === 'scatter')) throw new Error('DP-SGD: a scattering layer must be the first layer');
  const out = scatteringOutputShape(shape, first.params);
  const images = scatteringFeatures(data, shape, first.params);
  return { ops: withInputShape(ops.slice(1), out), data: { ...data, images, rows: out[0], cols: out[1], channels: out[2] }, inputSize: out[0] * out[1] * out[2] };
}

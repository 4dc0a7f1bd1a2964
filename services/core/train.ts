import { tf, type tfl } from './tf.js';
import { classesOf, dropoutStepSeed, inputShapeOf, inputSizeOf, seedDropout } from './model.js';
import { createRng } from '../../datasets/rng.js';
import type { ImageSet } from '../../datasets/types.js';
import { TrainingProgress, epochBatches } from './train-progress.js';
import { parallelPlan, trainParallel } from './parallel-train.js';
import type { ModelSpec } from './model-spec.js';
import { featureHead } from './feature-head.js';

export type OptimizerName = 'adam' | 'sgd';

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer?: OptimizerName;
  /** FedProx: adds mu/2·‖w − w_global‖² to the loss so local models cannot drift far on skewed shards. */
  proximalMu?: number;
  seed?: number;
  /** Whose dropout masks these are: each step's masks are drawn from (run seed, node, round, step). */
  dropout?: { runSeed: number; node: string; round: number };
  /** Checked between batches; training stops early (and the caller discards the result). */
  shouldStop?: () => boolean;
  onEpoch?: (epoch: number, loss: number, accuracy: number, samplesPerSecond: number) => void;
  /** Samples done in the current epoch, for progress bars. */
  onProgress?: (epoch: number, done: number, total: number) => void;
  /** Data-parallel threads (parallel-train.ts); default EDGEFL_TRAIN_THREADS, else every CPU the function is given. */
  threads?: number;
  /** The spec `model` was built from (default the reference CNN); the threads rebuild its forward pass. */
  spec?: ModelSpec;
}

export interface TrainResult {
  loss: number;
  accuracy: number;
  samples: number;
  epochs: number;
  steps: number;
  durationMs: number;
  samplesPerSecond: number;
  stopped: boolean;
}

function makeOptimizer(name: OptimizerName, lr: number): tf.Optimizer {
  return name === 'sgd' ? tf.train.momentum(lr, 0.9) : tf.train.adam(lr);
}

/**
 * Local training on a node's shard: mini-batch SGD/Adam with a hand-written step so the
 * FedProx term can join the loss. Yields to the event loop between batches so health
 * checks keep answering while a round trains.
 */
export async function trainLocal(model: tfl.LayersModel, data: ImageSet, opts: TrainOptions): Promise<TrainResult> {
  if (data.count === 0) throw new Error('cannot train on an empty shard');
  // A leading scattering layer: train the layers after it on the shard's features, computed once.
  const head = featureHead(model, data);
  if (head) return trainLocal(head.model, head.data, { ...opts, spec: undefined, threads: 1 });
  const plan = parallelPlan(model, opts);
  if (plan) return trainParallel(model, data, opts, plan);
  const rng = createRng(opts.seed ?? 1);
  const dropout = opts.dropout ?? { runSeed: opts.seed ?? 1, node: '', round: 0 };
  const optimizer = makeOptimizer(opts.optimizer ?? 'adam', opts.learningRate);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const mu = opts.proximalMu ?? 0;
  const anchors = mu > 0 ? variables.map((v) => tf.keep(v.clone())) : [];
  const PIXELS = inputSizeOf(model);
  if (data.images.length !== data.count * PIXELS) throw new Error(`the data holds ${data.images.length / Math.max(1, data.count)} values per sample; the model takes ${PIXELS} (${inputShapeOf(model).join('x')})`);
  const batchPixels = new Float32Array(opts.batchSize * PIXELS);
  const batchLabels = new Int32Array(opts.batchSize);
  const progress = new TrainingProgress(data.count, opts);
  const run = { stopped: false };
  try {
    for (const { order, start, n } of epochBatches(data.count, opts, rng, progress, run)) {
      for (let i = 0; i < n; i++) {
        const src = order[start + i]!;
        batchPixels.set(data.images.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
        batchLabels[i] = data.labels[src]!;
      }
      seedDropout(model, dropoutStepSeed(dropout.runSeed, dropout.node, dropout.round, progress.steps));
      const stats = trainStep(model, optimizer, variables, anchors, mu, batchPixels.subarray(0, n * PIXELS), batchLabels.subarray(0, n));
      await progress.step(n, stats.loss * n, stats.correct);
    }
  } finally {
    tf.dispose(anchors);
    optimizer.dispose();
  }
  return progress.result(run.stopped);
}

/** FedProx's term mu/2·Σ‖w − w_global‖²; its gradient pulls each weight back by mu·(w − w_global). */
export function proximalTerm(variables: tf.Tensor[], anchors: tf.Tensor[], mu: number): tf.Scalar {
  const squared = variables.reduce<tf.Scalar>((acc, v, i) => tf.add(acc, tf.sum(tf.square(tf.sub(v, anchors[i]!)))) as tf.Scalar, tf.scalar(0));
  return tf.mul(mu / 2, squared) as tf.Scalar;
}

function trainStep(
  model: tfl.LayersModel,
  optimizer: tf.Optimizer,
  variables: tf.Variable[],
  anchors: tf.Tensor[],
  mu: number,
  pixels: Float32Array,
  labels: Int32Array,
): { loss: number; correct: number } {
  const n = labels.length;
  let correctT: tf.Tensor | undefined;
  const cost = tf.tidy(() => {
    const xs = tf.tensor4d(pixels, [n, ...inputShapeOf(model)]);
    const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), classesOf(model));
    return optimizer.minimize(
      () => {
        const probs = model.apply(xs, { training: true }) as tf.Tensor2D;
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), tf.argMax(ys, 1)), 'int32')));
        const ce = tf.neg(tf.mean(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1))), 1))) as tf.Scalar;
        return mu === 0 ? ce : (tf.add(ce, proximalTerm(variables, anchors, mu)) as tf.Scalar);
      },
      true,
      variables,
    ) as tf.Scalar;
  });
  const loss = cost.dataSync()[0]!;
  const correct = correctT ? correctT.dataSync()[0]! : 0;
  tf.dispose([cost, correctT!]);
  return { loss, correct };
}


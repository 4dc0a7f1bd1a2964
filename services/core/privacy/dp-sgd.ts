/**
 * DP-SGD (Abadi et al. 2016) for a node's local training: Poisson-sampled batches,
 * per-example gradients clipped to L2 norm C, Gaussian noise N(0, σ²C²) added to their
 * sum, divided by the EXPECTED batch size qN (a fixed denominator, so the sensitivity of
 * the released average stays C/(qN) whatever the sampled batch size). That is exactly the
 * mechanism the RDP accountant in rdp.ts prices: `steps` compositions of the
 * Poisson-subsampled Gaussian at rate q and noise multiplier σ.
 *
 * What the optimizer does with the noisy gradient (Adam, momentum, the FedProx pull
 * towards the global weights) is post-processing and costs no privacy.
 */
import { tf, type tfl } from '../tf.js';
import type { TrainOptions, TrainResult } from '../train.js';
import { TrainingProgress } from '../train-progress.js';
import { randomFillSync } from 'node:crypto';
import { createRng, normal, type Rng } from '../../../datasets/rng.js';
import type { ImageSet } from '../../../datasets/types.js';
import type { GaussianEvent } from './rdp.js';
import { convGradients, disposeTrace, opsOf, perExampleSquaredNorms, traceBatch, weightedGradientSum, type Op } from './per-example.js';
import { fixedFeatureStage } from './fixed-features.js';

export interface DpSgdConfig {
  /** σ: noise standard deviation as a multiple of the clip norm. */
  noiseMultiplier: number;
  /** C: every example's gradient is scaled down to at most this L2 norm. */
  clipNorm: number;
  /**
   * TESTS ONLY: draw the batches and the noise from this seed. Without it both come from
   * the OS's CSPRNG, as they must: anyone who can reproduce the noise can subtract it, and
   * the sampling amplification assumes nobody knows which records a batch held.
   */
  insecureSeed?: number;
}

/** Uniform [0, 1) numbers from the OS's CSPRNG, refilled 4,096 at a time. */
export function secureRng(): Rng {
  const buf = new Uint32Array(4096);
  let at = buf.length;
  return () => {
    if (at === buf.length) {
      randomFillSync(buf);
      at = 0;
    }
    return buf[at++]! / 4294967296;
  };
}

/** n standard normal draws (Box-Muller) from `rng`. */
export function normals(n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = normal(rng);
  return out;
}

export interface DpTrainResult extends TrainResult {
  /** The mechanism that ran, for the node's privacy ledger. */
  privacy: GaussianEvent;
}

/** c_i = min(1, C / ‖g_i‖): the factor that brings each example's gradient within the clip norm. */
export function clipFactors(squaredNorms: ArrayLike<number>, clipNorm: number): Float64Array {
  return Float64Array.from({ length: squaredNorms.length }, (_, i) => Math.min(1, clipNorm / (Math.sqrt(squaredNorms[i]!) + 1e-6)));
}

/** Each index joins the batch independently with probability q (what the accountant assumes). */
export function poissonSample(count: number, q: number, rng: Rng): Uint32Array {
  const picked: number[] = [];
  for (let i = 0; i < count; i++) if (rng() < q) picked.push(i);
  return Uint32Array.from(picked);
}

export interface PrivateGradient {
  /** Noisy average gradient per trainable weight, in model order. */
  grads: tf.Tensor[];
  lossSum: number;
  correct: number;
}

/**
 * (Σ_i clip(g_i) + N(0, σ²C²·I)) / expectedBatch for one sampled batch. An empty batch
 * still releases noise, as the mechanism requires.
 */
export function privateGradient(
  ops: readonly Op[],
  pixels: Float32Array,
  labels: Int32Array,
  cfg: DpSgdConfig,
  expectedBatch: number,
  noiseRng: Rng,
  dropoutSeed?: number,
): PrivateGradient {
  const weights = ops.flatMap((o) => (o.kind === 'conv' || o.kind === 'dense' ? [o.kernel, o.bias] : []));
  let sums: tf.Tensor[];
  let lossSum = 0;
  let correct = 0;
  if (labels.length === 0) sums = weights.map((w) => tf.zerosLike(w));
  else {
    const trace = traceBatch(ops, pixels, labels, dropoutSeed);
    try {
      const conv = convGradients(trace);
      sums = weightedGradientSum(trace, conv, clipFactors(perExampleSquaredNorms(trace, conv), cfg.clipNorm));
      ({ lossSum, correct } = trace);
    } finally {
      disposeTrace(trace);
    }
  }
  const std = cfg.noiseMultiplier * cfg.clipNorm;
  const grads = sums.map((s) =>
    tf.tidy(() => {
      const noisy = std > 0 ? tf.add(s, tf.mul(tf.tensor(normals(s.size, noiseRng), s.shape), std)) : s;
      return tf.div(noisy, expectedBatch);
    }),
  );
  tf.dispose(sums);
  return { grads, lossSum, correct };
}

/**
 * The mechanism a DP-SGD training WILL run, known before it starts: what a node checks
 * against its budget. q = batchSize / N (batchSize is the expected batch), and as many
 * steps as non-private training would take: epochs × ⌈N / batchSize⌉.
 */
export function dpSgdPlan(count: number, epochs: number, batchSize: number, noiseMultiplier: number): GaussianEvent {
  return { samplingRate: Math.min(1, batchSize / count), noiseMultiplier, steps: epochs * Math.ceil(count / batchSize) };
}

function makeOptimizer(opts: TrainOptions): tf.Optimizer {
  return opts.optimizer === 'sgd' ? tf.train.momentum(opts.learningRate, 0.9) : tf.train.adam(opts.learningRate);
}

/** Local DP-SGD training, running exactly the mechanism `dpSgdPlan` describes (reported in `privacy`). */
export async function trainLocalDp(model: tfl.LayersModel, shard: ImageSet, opts: TrainOptions & { dp: DpSgdConfig }): Promise<DpTrainResult> {
  if (shard.count === 0) throw new Error('cannot train on an empty shard');
  if (!(opts.dp.clipNorm > 0) || !(opts.dp.noiseMultiplier >= 0)) throw new Error('DP-SGD needs clipNorm > 0 and noiseMultiplier ≥ 0');
  // A leading scattering layer's features are computed once per shard; the ops after it train.
  const { ops, data, inputSize: PIXELS } = fixedFeatureStage(opsOf(model), shard);
  const variables = ops.flatMap((o) => (o.kind === 'conv' || o.kind === 'dense' ? [o.kernel, o.bias] : []));
  const rng = opts.dp.insecureSeed === undefined ? secureRng() : createRng(opts.dp.insecureSeed);
  const dropoutRng = createRng(opts.seed ?? 1);
  const plan = dpSgdPlan(data.count, opts.epochs, opts.batchSize, opts.dp.noiseMultiplier);
  const q = plan.samplingRate;
  const expectedBatch = q * data.count;
  const stepsPerEpoch = plan.steps / opts.epochs;
  const optimizer = makeOptimizer(opts);
  const mu = opts.proximalMu ?? 0;
  const anchors = mu > 0 ? variables.map((v) => tf.keep(v.clone())) : [];
  const progress = new TrainingProgress(data.count, opts);
  let stopped = false;
  try {
    for (let epoch = 0; epoch < opts.epochs && !stopped; epoch++) {
      progress.startEpoch(epoch);
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (opts.shouldStop?.()) {
          stopped = true;
          break;
        }
        const batch = poissonSample(data.count, q, rng);
        const pixels = new Float32Array(batch.length * PIXELS);
        const labels = new Int32Array(batch.length);
        batch.forEach((src, i) => {
          pixels.set(data.images.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS);
          labels[i] = data.labels[src]!;
        });
        const g = privateGradient(ops, pixels, labels, opts.dp, expectedBatch, rng, Math.floor(dropoutRng() * 2 ** 31));
        const withProx = mu > 0 ? g.grads.map((t, i) => tf.tidy(() => tf.add(t, tf.mul(mu, tf.sub(variables[i]!, anchors[i]!))))) : g.grads;
        optimizer.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, withProx[i]!])));
        tf.dispose(withProx === g.grads ? g.grads : [...g.grads, ...withProx]);
        await progress.step(batch.length, g.lossSum, g.correct);
      }
      progress.endEpoch();
    }
  } finally {
    tf.dispose(anchors);
    optimizer.dispose();
  }
  return { ...progress.result(stopped), privacy: { samplingRate: q, noiseMultiplier: opts.dp.noiseMultiplier, steps: progress.steps } };
}

/**
 * privacy: held-out accuracy of an in-process FedAvg federation (N nodes, Dirichlet split
 * of the built-in digits) whose nodes train with DP-SGD at ε ∈ {1, 3, 8, ∞} (δ = 1e-5
 * per node), and DP-SGD samples/s against non-private training in the same run.
 *
 * For each finite ε, every node gets the smallest noise multiplier σ that keeps its OWN
 * total ε (all rounds composed, RDP accountant) within the target; nodes of different
 * shard sizes get different σ. ε = ∞ is the same DP-SGD with σ = 0 (clipping only).
 *
 * The held-out digits are split in two halves: rounds log the validation half (what settings
 * were chosen on), and each point reports the test half too, which no choice looked at.
 */
import { initBackend } from '../services/core/backend.js';
import { buildModel, evaluate, getFlatWeights, setFlatWeights } from '../services/core/model.js';
import { trainLocal, type TrainOptions } from '../services/core/train.js';
import { dpSgdPlan, trainLocalDp } from '../services/core/privacy/dp-sgd.js';
import { composeEvents, DEFAULT_ORDERS, epsilonFromRdp, noiseForEpsilon, type GaussianEvent } from '../services/core/privacy/rdp.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { partition } from '../datasets/partition.js';
import { subset, type ImageSet } from '../datasets/types.js';
import { movingAverage, resolveModelSpec, serverStep, serverState, roundLearningRate } from './privacy-settings.js';
import type { ModelSpec } from '../services/core/model-spec.js';
import { benchmark, int, num, oneOf, text, BenchUsageError, type BenchContext, type ParamsOf } from './lib/flags.js';
import { mdTable, type BenchOutput } from './lib/output.js';
import { round } from './lib/stats.js';

export interface PrivacyParams extends Record<string, unknown> {
  nodes: number;
  alpha: number;
  rounds: number;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: 'sgd' | 'adam';
  clip: number;
  delta: number;
  epsilons: number[];
  throughput_steps: number;
  seed: number;
  model: string;
  lr_schedule: 'constant' | 'cosine';
  server_lr: number;
  server_momentum: number;
  ema: number;
}

const PRIVACY_FLAGS = {
  nodes: int('edge nodes', { min: 1, max: 32, default: 3 }),
  alpha: num('Dirichlet concentration of the partition', { above: 0, default: 0.5 }),
  rounds: int('federated rounds per ε', { min: 1, max: 1000, default: 20 }),
  epochs: int('local epochs per round', { min: 1, max: 100, default: 2 }),
  batch: int('expected batch size (Poisson sampling rate = batch / shard size)', { min: 1, max: 4096, default: 512 }),
  lr: num('learning rate', { above: 0, default: 0.5 }),
  optimizer: oneOf(['sgd', 'adam'] as const, 'optimizer', { default: 'sgd' }),
  clip: num('per-example clipping norm C', { above: 0, default: 1 }),
  delta: num('δ of the (ε, δ) guarantee', { above: 0, max: 1, default: 1e-5 }),
  epsilons: text('per-node ε budgets, comma-separated; inf = clipping without noise', { default: '1,3,8,inf' }),
  'throughput-steps': int('batches timed for the samples/s comparison', { min: 1, max: 10_000, default: 6 }),
  seed: int('seed', { min: 0, max: 2 ** 31, default: 1 }),
  model: text('built-in model (dp-cnn: the small tanh CNN; reference: the 317k-parameter CNN) or the path of a Layers model.json', { default: 'dp-cnn' }),
  'lr-schedule': oneOf(['constant', 'cosine'] as const, 'local learning rate across rounds (cosine: from lr down to lr/10 in the last round)', { default: 'constant' }),
  'server-lr': num('server learning rate on the averaged update (FedAvg: 1)', { above: 0, default: 1 }),
  'server-momentum': num('server momentum on the averaged update (FedAvgM; 0: plain FedAvg)', { min: 0, max: 0.99, default: 0 }),
  ema: num('evaluate an exponential moving average of the global models over rounds with this decay (0: the last model)', { min: 0, max: 0.99, default: 0 }),
};

/** The flags' values with --epsilons parsed: positive numbers, or inf for no noise. */
export function parsePrivacy(v: ParamsOf<typeof PRIVACY_FLAGS>): PrivacyParams {
  const eps = v.epsilons.split(',').map((s) => (s.trim() === 'inf' ? Infinity : Number(s)));
  if (eps.some((e) => !(e > 0))) throw new BenchUsageError('--epsilons must be positive numbers or inf, comma-separated');
  return { ...v, epsilons: eps };
}

export interface PrivacyPoint {
  epsilon: number | null;
  /** On the test half of the held-out digits (no setting was chosen on it). */
  accuracy: number;
  /** On the validation half, after the last round. */
  validation_accuracy: number;
  /** Per node: σ used and the ε its ledger would show after all rounds. */
  nodes: { samples: number; sigma: number | null; epsilon_spent: number | null }[];
  /** Validation half, after every round. */
  accuracy_per_round: number[];
  /** The largest node ε after each round: a run is also a curve of (ε spent, accuracy) points. */
  epsilon_per_round: (number | null)[];
}

function trainOptions(p: PrivacyParams, seed: number, learningRate = p.lr): TrainOptions {
  return { epochs: p.epochs, batchSize: p.batch, learningRate, optimizer: p.optimizer, seed };
}

/**
 * FedAvg over in-process nodes; each node trains from the global weights and the average is
 * weighted by shard size (then applied with the server's learning rate and momentum).
 * Returns the validation-half accuracy after each round and the test-half accuracy at the end.
 */
async function federate(
  p: PrivacyParams,
  spec: ModelSpec,
  shards: ImageSet[],
  heldOut: { validation: ImageSet; test: ImageSet },
  sigmas: (number | null)[],
  log: (m: string) => void,
): Promise<{ validation: number[]; test: number }> {
  const model = buildModel(p.seed, spec);
  let global = getFlatWeights(model);
  const server = serverState(global.length);
  let average: Float32Array | undefined;
  const total = shards.reduce((n, s) => n + s.count, 0);
  const accuracy: number[] = [];
  for (let r = 1; r <= p.rounds; r++) {
    const next = new Float32Array(global.length);
    const lr = roundLearningRate(p.lr, p.lr_schedule, r, p.rounds);
    for (const [i, shard] of shards.entries()) {
      setFlatWeights(model, global);
      const opts = trainOptions(p, p.seed * 1000 + r * 10 + i, lr);
      const sigma = sigmas[i];
      // ε = ∞ is the same DP-SGD without noise (clipping kept): the learning rate that suits
      // clipped gradients diverges on raw ones, so this isolates what the noise costs.
      await trainLocalDp(model, shard, { ...opts, dp: { noiseMultiplier: sigma ?? 0, clipNorm: p.clip } });
      const w = getFlatWeights(model);
      const share = shard.count / total;
      for (let j = 0; j < w.length; j++) next[j]! += share * w[j]!;
    }
    global = serverStep(global, next, server, p.server_lr, p.server_momentum);
    average = movingAverage(average, global, p.ema);
    setFlatWeights(model, average);
    accuracy.push(evaluate(model, heldOut.validation.images, heldOut.validation.labels).accuracy);
    log(`round ${r}: validation accuracy ${(accuracy.at(-1)! * 100).toFixed(2)} % (local lr ${lr.toPrecision(3)})`);
  }
  const test = evaluate(model, heldOut.test.images, heldOut.test.labels).accuracy;
  model.dispose();
  return { validation: accuracy, test };
}

/** Samples/s of `steps` batches, non-private then DP-SGD, twice interleaved; the better of each. */
async function throughput(p: PrivacyParams, spec: ModelSpec, shard: ImageSet): Promise<{ plain: number; dp: number }> {
  const count = Math.min(shard.count, p.batch * p.throughput_steps);
  const data = subset(shard, Array.from({ length: count }, (_, i) => i));
  const opts = { ...trainOptions(p, 1), epochs: 1 };
  const best = { plain: 0, dp: 0 };
  for (let rep = 0; rep < 2; rep++) {
    const model = buildModel(p.seed, spec);
    best.plain = Math.max(best.plain, (await trainLocal(model, data, opts)).samplesPerSecond);
    best.dp = Math.max(best.dp, (await trainLocalDp(model, data, { ...opts, dp: { noiseMultiplier: 1, clipNorm: p.clip } })).samplesPerSecond);
    model.dispose();
  }
  return best;
}

export const privacy = benchmark({
  description: 'held-out accuracy vs per-node ε (DP-SGD, 3 nodes, Dirichlet 0.5, digits) and DP-SGD samples/s vs non-private',
  flags: PRIVACY_FLAGS,
  params: parsePrivacy,
  async run(p: PrivacyParams, ctx: BenchContext): Promise<BenchOutput> {
    const spec = resolveModelSpec(p.model);
    const backend = await initBackend(undefined, ctx.log);
    const split = builtinMnistSplit({ seed: p.seed });
    const half = Math.floor(split.test.count / 2);
    const heldOut = {
      validation: subset(split.test, Array.from({ length: half }, (_, i) => i)),
      test: subset(split.test, Array.from({ length: split.test.count - half }, (_, i) => half + i)),
    };
    const parts = partition(split.train.labels, 10, { kind: 'dirichlet', nodes: p.nodes, alpha: p.alpha, seed: p.seed });
    const shards = parts.map((s) => subset(split.train, Array.from(s.indices)));
    ctx.log(`model ${p.model}; shards: ${shards.map((s) => s.count).join(', ')} samples; held-out ${heldOut.validation.count} validation + ${heldOut.test.count} test`);

    ctx.log(`throughput: ${p.throughput_steps} batches of ${p.batch}, non-private vs DP-SGD`);
    const tp = await throughput(p, spec, shards[0]!);
    const ratio = round(tp.dp / tp.plain, 3);
    ctx.log(`non-private ${round(tp.plain, 1)} samples/s, DP-SGD ${round(tp.dp, 1)} samples/s, ratio ${ratio}`);

    const points: PrivacyPoint[] = [];
    for (const eps of p.epsilons) {
      const plans = shards.map((s) => dpSgdPlan(s.count, p.epochs, p.batch, 1));
      const sigmas = plans.map((plan) =>
        Number.isFinite(eps) ? noiseForEpsilon({ samplingRate: plan.samplingRate, steps: plan.steps * p.rounds, delta: p.delta, targetEpsilon: eps }) : null,
      );
      ctx.log(`ε = ${eps}: σ per node ${sigmas.map((s) => (s === null ? '—' : s.toFixed(3))).join(', ')}`);
      const run = await federate(p, spec, shards, heldOut, sigmas, ctx.log);
      const acc = run.validation;
      ctx.log(`ε = ${eps}: test accuracy ${(run.test * 100).toFixed(2)} %`);
      const spentAfter = (rounds: number) =>
        plans.map((plan, i) => {
          if (sigmas[i] === null) return null;
          const events: GaussianEvent[] = Array.from({ length: rounds }, () => ({ ...plan, noiseMultiplier: sigmas[i]! }));
          return round(epsilonFromRdp(DEFAULT_ORDERS, composeEvents(events), p.delta).epsilon, 3);
        });
      const spent = spentAfter(p.rounds);
      const perRound = acc.map((_, r) => (Number.isFinite(eps) ? Math.max(...spentAfter(r + 1).map((e) => e ?? 0)) : null));
      points.push({
        epsilon: Number.isFinite(eps) ? eps : null,
        accuracy: round(run.test, 4),
        validation_accuracy: round(acc.at(-1)!, 4),
        nodes: shards.map((s, i) => ({ samples: s.count, sigma: sigmas[i] === null ? null : round(sigmas[i]!, 3), epsilon_spent: spent[i]! })),
        accuracy_per_round: acc.map((a) => round(a, 4)),
        epsilon_per_round: perRound,
      });
    }
    const headline = { points: points.map((pt) => ({ epsilon: pt.epsilon, accuracy: pt.accuracy })), dp_throughput_ratio: ratio };
    const at8 = points.filter((pt) => pt.epsilon !== null && pt.epsilon <= 8).map((pt) => pt.accuracy);
    return {
      backend: backend.name,
      params: p,
      headline,
      results: { points, throughput: { plain_samples_per_s: round(tp.plain, 1), dp_samples_per_s: round(tp.dp, 1), ratio }, ceiling: [] },
      targets: [
        { name: 'best held-out accuracy at ε ≤ 8 (δ = 1e-5 per node)', target: '>= 0.95', measured: at8.length ? Math.max(...at8) : null, unit: 'accuracy', met: at8.length ? Math.max(...at8) >= 0.95 : null },
        { name: 'DP-SGD throughput vs non-private', target: '>= 0.5', measured: ratio, unit: 'ratio', met: ratio >= 0.5 },
      ],
      report: [
        '## Differential privacy',
        '',
        `Model ${p.model}. ε = ∞: the same training with σ = 0 (clipped, no noise). ${p.nodes} nodes (Dirichlet ${p.alpha}: ${shards.map((s) => s.count).join(', ')} digits), ${p.rounds} FedAvg rounds of ${p.epochs} local epoch(s), expected batch ${p.batch}, ${p.optimizer === 'sgd' ? 'SGD+momentum 0.9' : 'Adam'} lr ${p.lr}, clip ${p.clip}, δ = ${p.delta} per node; local lr ${p.lr_schedule}, server lr ${p.server_lr}, server momentum ${p.server_momentum}, EMA of the global models ${p.ema}. Accuracy: the test half of the held-out digits; per round: the validation half, on which settings were chosen (not accounted in ε).`,
        '',
        mdTable(
          ['target ε per node', 'σ per node', 'ε spent per node', 'test accuracy', 'validation per round (ε spent)'],
          points.map((pt) => [
            pt.epsilon ?? '∞',
            pt.nodes.map((n) => n.sigma ?? '—').join(', '),
            pt.nodes.map((n) => n.epsilon_spent ?? '∞').join(', '),
            `${(pt.accuracy * 100).toFixed(2)} %`,
            pt.accuracy_per_round.map((a, r) => `${(a * 100).toFixed(1)}${pt.epsilon_per_round[r] === null ? '' : ` (${pt.epsilon_per_round[r]!.toFixed(2)})`}`).join(' → '),
          ]),
        ),
        '',
        `Throughput (batch ${p.batch}, same run): non-private ${round(tp.plain, 1)} samples/s, DP-SGD ${round(tp.dp, 1)} samples/s, ratio ${ratio}.`,
      ].join('\n'),
      charts: [],
    };
  },
});

/**
 * `edgefl up --dp local|client ...`: the run's differential privacy from the command line.
 * Ranges and defaults come from the dp run config schema (services/core/privacy/config.ts),
 * as the run's other flags come from RunConfig's; the training settings DP needs (SGD with
 * momentum, a large batch and learning rate: see README "Differential privacy") are this
 * file's defaults, applied only when --dp is given.
 */
import { dpConfigSchema, dpProblems } from '../core/privacy/config.js';
import { noiseForEpsilon } from '../core/privacy/rdp.js';
import { dpSgdPlan } from '../core/privacy/dp-sgd.js';
import type { RunConfig } from '../../aggregator/run-config.js';
import { UsageError, fromNumberSchema, num, oneOf, type FlagValues } from './flags.js';
import type { ModelSpec } from '../core/model-spec.js';
import { RESOURCES } from '../kube/constants.js';
import { maxBatchForMemory } from '../trainer/train-request.js';

const DP = dpConfigSchema.shape;

/** Digits in the built-in dataset (datasets/builtin-mnist.ts). */
const BUILTIN_DIGITS = 10_000;

/**
 * What `--dp local` trains with: SGD with momentum and a large learning rate, as
 * bench/privacy.ts measured best. For the reference CNN the expected batch is 256, because a
 * trainer under its default 512 MiB memory limit refuses that model's batches above 290.
 */
export const DP_SGD_TRAINING = { optimizer: 'sgd', learningRate: 0.5, batchSize: 256 } as const;
/** The bench's expected batch (its ε = 8 figures), for models whose batches of it fit a trainer's memory. */
export const DP_SGD_BENCH_BATCH = 512;
/** The memory limit of the trainers `up` starts (the manifests' trainer limit, their default too). */
const TRAINER_MIB = parseInt(RESOURCES.trainer.limits.memory, 10);

/** DP-SGD's training settings for the run's model: the bench's batch where the model's cap allows it, else 256. */
export function dpSgdTraining(model?: ModelSpec): { optimizer: 'sgd'; learningRate: number; batchSize: number } {
  return { ...DP_SGD_TRAINING, batchSize: maxBatchForMemory(TRAINER_MIB, model) >= DP_SGD_BENCH_BATCH ? DP_SGD_BENCH_BATCH : DP_SGD_TRAINING.batchSize };
}

export const DP_UP_FLAGS = {
  dp: oneOf(['local', 'client'] as const, 'differential privacy: DP-SGD on every node (record-level) or DP-FedAvg at the aggregator (client-level)', { arg: 'MODE' }),
  'dp-epsilon': fromNumberSchema(DP.epsilonBudget, 'ε budget: each node\'s over all its rounds (local), the run\'s client-level ε (client); default 8', { arg: 'EPS', optional: true }),
  'dp-delta': fromNumberSchema(DP.delta, 'δ of the (ε, δ) guarantee', { arg: 'D' }),
  'dp-noise': fromNumberSchema(DP.noiseMultiplier, 'noise multiplier σ (default: the smallest σ whose ε over --rounds stays within --dp-epsilon)', { arg: 'SIGMA', optional: true }),
  'dp-clip': fromNumberSchema(DP.clip, 'clip norm C: per example (local), per update (client)', { arg: 'C' }),
  'dp-clip-quantile': num('client only: adapt C to this quantile of the update norms (adaptive clipping)', { min: 0, max: 1, arg: 'Q' }),
};

type DpFlagValues = FlagValues<typeof DP_UP_FLAGS>;

/** The shape of the federation `up` starts, to price a round before any node exists. */
export interface UpShape {
  nodes: number;
  rounds: number;
  epochs: number;
  dataset?: string;
  testSize?: number;
  maxTrainSamples?: number;
  /** The deployment model (--model); the reference CNN when unset. */
  model?: ModelSpec;
}

/**
 * The RunConfig fields --dp asks for ({} without --dp). Without --dp-noise, σ is the
 * smallest that keeps ε within the budget over every round: for `local`, on a node holding
 * an average shard of the built-in digits (a node with fewer digits reaches its budget
 * earlier and is left out of the last rounds); for `client`, with every node in every round.
 */
export function dpRunFields(v: DpFlagValues, shape: UpShape): Partial<RunConfig> {
  if (!v.dp) {
    const stray = (['dp-epsilon', 'dp-noise', 'dp-clip-quantile'] as const).find((k) => v[k] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --dp local or --dp client`);
    return {};
  }
  const epsilonBudget = v['dp-epsilon'] ?? 8;
  const delta = v['dp-delta'];
  const local = v.dp === 'local';
  if (local && v['dp-clip-quantile'] !== undefined) throw new UsageError('--dp-clip-quantile is for --dp client (client-level DP-FedAvg)');
  const training = local ? dpSgdTraining(shape.model) : undefined;
  const shard = local ? averageShard(shape) : undefined;
  if (local && shard === undefined && v['dp-noise'] === undefined) throw new UsageError('--dp local with --dataset idx: give --dp-noise (the shard sizes are not known before the nodes start)');
  const noiseMultiplier = v['dp-noise'] ?? defaultNoise(shard, epsilonBudget, delta, shape, training?.batchSize ?? DP_SGD_TRAINING.batchSize);
  const adaptiveClip = v['dp-clip-quantile'] === undefined ? undefined : { targetQuantile: v['dp-clip-quantile'], learningRate: 0.2, countNoiseMultiplier: noiseMultiplier };
  const dp = dpConfigSchema.parse({ mode: local ? 'local' : 'central', epsilonBudget, delta, noiseMultiplier, clip: v['dp-clip'], ...(adaptiveClip ? { adaptiveClip } : {}) });
  // What POST /runs would refuse (a budget not even one round fits in), refused before anything starts.
  const problems = dpProblems(dp, { epochs: shape.epochs, batchSize: training?.batchSize ?? DP_SGD_TRAINING.batchSize, shardSizes: shard ? [shard] : [], participationRate: 1 });
  if (problems.length) throw new UsageError(problems.join('; '));
  return { ...training, ...(local ? {} : { strategy: 'dp-fedavg' }), dp };
}

/** A node's digits when the built-in set is split evenly; undefined for IDX files (unknown before the nodes load them). */
function averageShard(shape: UpShape): number | undefined {
  if (shape.dataset && shape.dataset !== 'mnist') return undefined;
  return Math.min(shape.maxTrainSamples ?? Infinity, Math.floor((BUILTIN_DIGITS - (shape.testSize ?? 2000)) / shape.nodes));
}

function defaultNoise(shard: number | undefined, epsilon: number, delta: number, shape: UpShape, batchSize: number): number {
  let event = { samplingRate: 1, steps: shape.rounds };
  if (shard !== undefined) {
    const round = dpSgdPlan(shard, shape.epochs, batchSize, 1);
    event = { samplingRate: round.samplingRate, steps: round.steps * shape.rounds };
  }
  try {
    // Rounded up: a σ rounded down would overspend the budget by a hair.
    return Math.ceil(noiseForEpsilon({ ...event, delta, targetEpsilon: epsilon }) * 1000) / 1000;
  } catch (e) {
    throw new UsageError(`--dp-epsilon ${epsilon}: ${(e as Error).message}`);
  }
}

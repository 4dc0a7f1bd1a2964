/**
 * Strategies in Flower's shape: a strategy configures each round's training
 * (`configureFit`: which nodes, with which instructions) and turns the round's screened
 * updates into the next global model (`aggregateFit`). The round driver knows nothing
 * else about them, so a new strategy (differential privacy, secure aggregation, an
 * asynchronous one) is one file exporting a StrategyFactory plus one line in REGISTRY.
 *
 * The FedAvg family streams: each update is folded into one running sum and dropped, so
 * memory stays at two model-sized vectors whatever the number of nodes. The robust
 * statistics (median, trimmed mean) need every update of the round at once by definition.
 */
import type { TrainerTarget } from './invoke.js';
import type { RunConfig } from './run-config.js';
import { chooseNodes, type RoundPlan } from './round/plan.js';
import type { NodeRoundResult, RoundContext } from './round/types.js';
import { coordinateWise, median, trimmedMean, weightedMean } from './round/aggregate.js';
import { dpFedAvg } from './dp-fedavg-strategy.js';
import { fedbuff, type AsyncAggregation } from './async/fedbuff-strategy.js';
import { fedlesscan, type RoundHistoryRow } from './fedlesscan-strategy.js';
import { secaggFedAvg } from './secagg-strategy.js';

export { clipToNorm, l2Distance, median, trimmedMean, weightedMean, type RoundAggregator } from './round/aggregate.js';

/** What a trainer is asked to do this round (the driver adds run, round, base version and deadline). */
export interface FitConfig {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: 'adam' | 'sgd';
  /** FedProx proximal weight (0: plain local training). */
  proximalMu: number;
  seed: number;
  /** Strategy-specific instructions (a DP noise scale, a secure-aggregation mask seed) travel here too. */
  [extra: string]: unknown;
}

export interface FitInstruction {
  target: TrainerTarget;
  config: FitConfig;
}

/** An update that passed screening (checksum, sample count, norm), decoded. */
export interface ScreenedUpdate {
  nodeId: string;
  weights: Float32Array;
  samples: number;
}

export interface Strategy {
  readonly name: string;
  /** Fewest accepted updates for the aggregate to mean what the strategy claims (median: 3); Infinity when no count will do. */
  readonly minUpdates: number;
  /**
   * The round's training instructions, one per chosen node. `keep` names the nodes a
   * re-entered round already chose: they are kept rather than sampled again.
   */
  configureFit(round: number, candidates: readonly TrainerTarget[], keep?: readonly string[]): FitInstruction[];
  /**
   * The next global weights. `updates` is consumed once, lazily (a stream keeps one update
   * in memory); it may end with an error (the round missed its quorum), so state must not
   * change until it is fully consumed.
   */
  aggregateFit(global: Float32Array, updates: AsyncIterable<ScreenedUpdate>): Promise<Float32Array>;
  /** Server-side state to persist after a round (FedAvgM's momentum); undefined for stateless strategies. */
  saveState?(): Buffer | undefined;
  /** Restores what saveState returned, when a run resumes in a new process. */
  loadState?(state: Buffer): void;
  /** Set by asynchronous strategies (FedBuff): no rounds, the async driver (aggregator/async/) runs them. */
  readonly async?: AsyncAggregation;
  /** The run's rounds so far, given before each round is planned (FedLesScan learns from them who straggles). */
  observeRounds?(rounds: readonly RoundHistoryRow[]): void;
  /**
   * Replaces the driver's fit, screen and aggregate steps for a strategy that must run its
   * own protocol with the nodes (secure aggregation); undefined when the run was aborted.
   */
  runRound?(round: OwnRound): Promise<OwnRoundResult | undefined>;
}

/** What the driver hands a strategy that runs the round itself. */
export interface OwnRound {
  ctx: RoundContext;
  runId: string;
  plan: RoundPlan;
  global: Float32Array;
  config: RunConfig;
  strategy: Strategy;
  signal: AbortSignal;
}

export type OwnRoundResult = { nodes: NodeRoundResult[]; next: Float32Array; aggregationMs: number } | { nodes: NodeRoundResult[]; failure: string; accepted: number };

/** The run settings a strategy reads. */
export type StrategyConfig = Pick<
  RunConfig,
  'fraction' | 'seed' | 'epochs' | 'batchSize' | 'learningRate' | 'optimizer' | 'proximalMu' | 'serverMomentum' | 'serverLearningRate' | 'trimFraction' | 'dp' | 'secagg'
  | 'bufferSize' | 'concurrency' | 'maxStaleness' | 'stalenessExponent'
>;
export type StrategyFactory = (config: StrategyConfig) => Strategy;

/** Training as configured, nodes sampled by `fraction`: the configureFit of every strategy here. */
export function configureByConfig(config: StrategyConfig, extra: Partial<FitConfig> = {}): Strategy['configureFit'] {
  return (round, candidates, keep) => {
    const fit: FitConfig = { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, optimizer: config.optimizer, proximalMu: 0, seed: config.seed, ...extra };
    // Record-level DP: every node runs DP-SGD and checks its own budget (services/trainer/private-round.ts).
    if (config.dp?.mode === 'local') fit.dp = config.dp;
    return chooseNodes(candidates, config, round, keep).map((target) => ({ target, config: { ...fit } }));
  };
}

async function meanOf(updates: AsyncIterable<ScreenedUpdate>): Promise<Float32Array> {
  const sum = weightedMean();
  for await (const u of updates) sum.add(u.weights, u.samples);
  return sum.result();
}

const fedavg: StrategyFactory = (config) => ({ name: 'fedavg', minUpdates: 1, configureFit: configureByConfig(config), aggregateFit: (_g, updates) => meanOf(updates) });

const fedprox: StrategyFactory = (config) => ({
  name: 'fedprox',
  minUpdates: 1,
  configureFit: configureByConfig(config, { proximalMu: config.proximalMu }),
  aggregateFit: (_g, updates) => meanOf(updates),
});

/**
 * FedAvgM (Hsu et al., 2019): the averaged change is treated as a pseudo-gradient
 * g = w_global − avg, with server momentum v ← βv + g and w ← w_global − η·v.
 * The momentum buffer lives as long as the strategy (one run).
 */
const fedavgm: StrategyFactory = (config) => {
  const beta = config.serverMomentum;
  const lr = config.serverLearningRate;
  let velocity: Float32Array | undefined;
  return {
    name: 'fedavgm',
    minUpdates: 1,
    configureFit: configureByConfig(config),
    saveState: () => (velocity ? Buffer.from(velocity.buffer, velocity.byteOffset, velocity.byteLength) : undefined),
    loadState(state) {
      if (state.byteLength % 4 !== 0) throw new Error('FedAvgM state is not a float32 vector');
      // Copy: the Buffer may share a pooled ArrayBuffer at an unaligned offset.
      velocity = new Float32Array(Uint8Array.from(state).buffer);
    },
    async aggregateFit(global, updates) {
      const avg = await meanOf(updates);
      velocity ??= new Float32Array(global.length);
      const out = new Float32Array(global.length);
      for (let i = 0; i < global.length; i++) {
        const v = beta * velocity[i]! + (global[i]! - avg[i]!);
        velocity[i] = v;
        out[i] = global[i]! - lr * v;
      }
      return out;
    },
  };
};

function robust(name: string, minUpdates: number, config: StrategyConfig, reduce: (values: Float64Array) => number): Strategy {
  return {
    name,
    minUpdates,
    configureFit: configureByConfig(config),
    async aggregateFit(_global, updates) {
      const all = coordinateWise(reduce);
      for await (const u of updates) all.add(u.weights);
      return all.result();
    },
  };
}

/** One bad value of three is outvoted; with two, the median is their mean. */
const medianStrategy: StrategyFactory = (config) => robust('median', 3, config, median);

const trimmedMeanStrategy: StrategyFactory = (config) => {
  const trim = config.trimFraction;
  if (!(trim >= 0 && trim < 0.5)) throw new Error('trimFraction must be in [0, 0.5)');
  return robust('trimmed-mean', trimmedMeanMinimum(trim), config, (values) => trimmedMean(values, trim));
};

/** Fewest values n (at least 3) for which ⌊trim·n⌋ ≥ 1 value is cut at each end; Infinity for trim 0. */
export function trimmedMeanMinimum(trim: number): number {
  if (!(trim > 0)) return Infinity;
  for (let n = 3; ; n++) if (Math.floor(trim * n) >= 1) return n;
}

/** Every strategy by name: registering a strategy is one line here (the run schema lists these names). */
const REGISTRY = {
  fedavg,
  fedprox,
  fedavgm,
  median: medianStrategy,
  'trimmed-mean': trimmedMeanStrategy,
  'dp-fedavg': dpFedAvg,
  fedbuff,
  fedlesscan,
  'secagg-fedavg': secaggFedAvg,
} satisfies Record<string, StrategyFactory>;

export type StrategyName = keyof typeof REGISTRY;
export const STRATEGIES = Object.keys(REGISTRY) as StrategyName[];

export function createStrategy(name: StrategyName, config: StrategyConfig): Strategy {
  const factory = (REGISTRY as Record<string, StrategyFactory>)[name];
  if (!factory) throw new Error(`unknown strategy '${String(name)}'; expected one of ${STRATEGIES.join(', ')}`);
  return factory(config);
}

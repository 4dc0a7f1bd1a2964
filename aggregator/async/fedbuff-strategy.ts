/**
 * fedbuff: asynchronous buffered aggregation (Nguyen et al. 2022). There is no round
 * barrier: `concurrency` nodes train at once, each from the newest global version when it
 * starts, and every K = bufferSize arrivals make one staleness-weighted step
 * (aggregator/async/buffer.ts). The federation runs it with the async driver
 * (aggregator/async/driver.ts) because `async` is set.
 *
 * No import of strategies.ts values: it registers this factory (see dp-fedavg-strategy.ts).
 */
import { weightedMean } from '../round/aggregate.js';
import { chooseNodes } from '../round/plan.js';
import type { FitConfig, StrategyFactory } from '../strategies.js';
import { stalenessWeight } from './buffer.js';

/** What the async driver needs from an asynchronous strategy. */
export interface AsyncAggregation {
  bufferSize: number;
  /** Nodes training at once; null: every eligible node. */
  concurrency: number | null;
  maxStaleness: number;
  serverLearningRate: number;
  weight(staleness: number): number;
}

export const fedbuff: StrategyFactory = (config) => {
  const fit: FitConfig = { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, optimizer: config.optimizer, proximalMu: 0, seed: config.seed };
  if (config.dp?.mode === 'local') fit.dp = config.dp;
  return {
    name: 'fedbuff',
    minUpdates: 1,
    configureFit: (round, candidates, keep) => chooseNodes(candidates, config, round, keep).map((target) => ({ target, config: { ...fit } })),
    // Only reached if a synchronous driver ran it: then it is plain FedAvg.
    async aggregateFit(_global, updates) {
      const sum = weightedMean();
      for await (const u of updates) sum.add(u.weights, u.samples);
      return sum.result();
    },
    async: {
      bufferSize: config.bufferSize,
      concurrency: config.concurrency,
      maxStaleness: config.maxStaleness,
      serverLearningRate: config.serverLearningRate,
      weight: (staleness) => stalenessWeight(staleness, config.stalenessExponent),
    },
  };
};

/**
 * secagg-fedavg: FedAvg under secure aggregation (Bonawitz et al. 2017). Each node masks
 * its sample-weighted update so that only the sum of the round's updates can be recovered;
 * the aggregator and PostgreSQL never hold any single one (aggregator/secagg/round.ts).
 *
 * Weights: a node scales its update by r = min(1, samples / maxWeight) before masking and
 * adds its (capped) sample count as one more masked value, so the aggregator divides the
 * summed updates by the summed counts: FedAvg's weighting, with no count seen alone.
 *
 * With client-level DP (dp.mode 'central'): each node clips its update to dp.clip before
 * masking (weight 1), and the aggregator adds N(0, σ²·clip²) to the unmasked sum and
 * divides by the number of nodes chosen, as dp-fedavg does with the plain updates.
 *
 * No import of strategies.ts values (see dp-fedavg-strategy.ts: a cycle).
 */
import { normal } from '../datasets/rng.js';
import { secureRng } from '../services/core/privacy/dp-sgd.js';
import { chooseNodes } from './round/plan.js';
import type { FitConfig, StrategyFactory } from './strategies.js';
import { runSecureRound, type Release } from './secagg/round.js';
import { secaggConfigSchema } from './secagg/config.js';

/** global + Σ r·Δ / Σ r: the weighted mean of the survivors' updates. */
const weightedMean: Release = (global, sum) => {
  if (!(sum.weightSum > 0)) throw new Error('secure aggregation recovered a zero total weight');
  return Float32Array.from(global, (g, i) => g + sum.weightedDeltaSum[i]! / sum.weightSum);
};

function noisedSum(noiseMultiplier: number, clip: number): Release {
  const rng = secureRng();
  return (global, sum, chosen) => Float32Array.from(global, (g, i) => g + (sum.weightedDeltaSum[i]! + noiseMultiplier * clip * normal(rng)) / Math.max(1, chosen));
}

export const secaggFedAvg: StrategyFactory = (config) => {
  const settings = config.secagg ?? secaggConfigSchema.parse({});
  const central = config.dp?.mode === 'central' ? config.dp : undefined;
  const release = central ? noisedSum(central.noiseMultiplier, central.clip) : weightedMean;
  return {
    name: 'secagg-fedavg',
    minUpdates: 2,
    configureFit(round, candidates, keep) {
      const fit: FitConfig = { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, optimizer: config.optimizer, proximalMu: 0, seed: config.seed };
      // Record-level DP-SGD on the nodes composes as is: the node trains privately, then masks.
      if (config.dp?.mode === 'local') fit.dp = config.dp;
      return chooseNodes(candidates, config, round, keep).map((target) => ({ target, config: { ...fit } }));
    },
    aggregateFit() {
      throw new Error('secagg-fedavg aggregates inside runRound: it never receives individual updates');
    },
    runRound: (round) => runSecureRound(round, settings, central?.clip ?? null, release),
  };
};

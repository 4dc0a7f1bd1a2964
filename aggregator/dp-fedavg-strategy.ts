/**
 * dp-fedavg: client-level differential privacy at the aggregator (McMahan et al. 2018).
 * Every chosen node trains as usual; its delta from the global model is clipped to
 * dp.clip, the clipped deltas are summed with equal weight, Gaussian noise of std
 * dp.noiseMultiplier·dp.clip is added, and the sum is divided by the number of nodes the
 * round CHOSE (fixed before anyone answers, so a missing node cannot change the scale).
 * The client-level ε over the run's rounds is shown by GET /runs/:id.
 *
 * No import of strategies.ts values: it registers this factory, and a cycle would leave
 * one of the two half-initialised depending on which module loads first.
 */
import { clippedDeltaSum } from '../services/core/privacy/dp-fedavg.js';
import { secureRng } from '../services/core/privacy/dp-sgd.js';
import { chooseNodes } from './round/plan.js';
import type { FitConfig, StrategyFactory } from './strategies.js';

export const dpFedAvg: StrategyFactory = (config) => {
  const dp = config.dp;
  if (!dp || dp.mode !== 'central') throw new Error("the dp-fedavg strategy needs dp.mode 'central'");
  const rng = secureRng();
  let expectedClients = 1;
  return {
    name: 'dp-fedavg',
    minUpdates: 1,
    configureFit(round, candidates, keep) {
      const chosen = chooseNodes(candidates, config, round, keep);
      expectedClients = Math.max(1, chosen.length);
      const fit: FitConfig = { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, optimizer: config.optimizer, proximalMu: 0, seed: config.seed };
      return chosen.map((target) => ({ target, config: { ...fit } }));
    },
    async aggregateFit(global, updates) {
      const sum = clippedDeltaSum(global, dp.clip);
      for await (const u of updates) sum.add(u.weights);
      return sum.release(dp.noiseMultiplier, expectedClients, rng).weights;
    },
  };
};

/**
 * dp-fedavg: client-level differential privacy at the aggregator (McMahan et al. 2018).
 * Every chosen node trains as usual; its delta from the global model is clipped to C, the
 * clipped deltas are summed with equal weight, Gaussian noise of std σ·C is added, and the
 * sum is divided by the number of nodes the round CHOSE (fixed before anyone answers, so a
 * missing node cannot change the scale). The client-level ε over the run's rounds is shown
 * by GET /runs/:id.
 *
 * C is dp.clip, or with dp.adaptiveClip it starts there and follows a quantile of the update
 * norms (services/core/privacy/adaptive-clip.ts): the updates then get noise σ_Δ > σ so that
 * updates and count bits together cost exactly the σ the accountant prices. C is the
 * strategy's state, saved after every round, so a resumed run goes on from where it was.
 *
 * No import of strategies.ts values: it registers this factory, and a cycle would leave
 * one of the two half-initialised depending on which module loads first.
 */
import { clippedDeltaSum } from '../services/core/privacy/dp-fedavg.js';
import { nextClip, noisyUnclippedShare, updateNoiseMultiplier } from '../services/core/privacy/adaptive-clip.js';
import { secureRng } from '../services/core/privacy/dp-sgd.js';
import { chooseNodes } from './round/plan.js';
import type { FitConfig, StrategyFactory } from './strategies.js';

export const dpFedAvg: StrategyFactory = (config) => {
  const dp = config.dp;
  if (!dp || dp.mode !== 'central') throw new Error("the dp-fedavg strategy needs dp.mode 'central'");
  const adaptive = dp.adaptiveClip;
  const updateSigma = adaptive ? updateNoiseMultiplier(dp.noiseMultiplier, adaptive.countNoiseMultiplier) : dp.noiseMultiplier;
  const rng = secureRng();
  let expectedClients = 1;
  let clip = dp.clip;
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
      const sum = clippedDeltaSum(global, clip);
      for await (const u of updates) sum.add(u.weights);
      const released = sum.release(updateSigma, expectedClients, rng);
      if (adaptive) clip = nextClip(clip, noisyUnclippedShare(released.unclipped, expectedClients, adaptive.countNoiseMultiplier, rng), adaptive);
      return released.weights;
    },
    saveState: () => (adaptive ? Buffer.from(JSON.stringify({ clip })) : undefined),
    loadState(state) {
      const saved = JSON.parse(state.toString('utf8')) as { clip?: unknown };
      if (typeof saved.clip === 'number' && saved.clip > 0) clip = saved.clip;
    },
  };
};

/**
 * A trainer round under record-level DP: the node checks the round's mechanism against
 * its privacy ledger first and refuses (403 privacy_budget_exhausted) a round that would
 * take its total ε past the budget; otherwise it records the mechanism and runs DP-SGD.
 */
import type pg from 'pg';
import type { tfl } from '../core/tf.js';
import type { TrainOptions, TrainResult } from '../core/train.js';
import type { DpConfig } from '../core/privacy/config.js';
import { dpSgdPlan, trainLocalDp } from '../core/privacy/dp-sgd.js';
import { HttpError } from '../http/errors.js';
import { reservePrivacy } from '../store/privacy-ledger.js';
import type { ImageSet } from '../../datasets/types.js';

export interface PrivateTrainResult extends TrainResult {
  /** The node's total ε (at the run's δ) including this round. */
  epsilon: number;
}

export function trainWithPrivacy(
  pool: pg.Pool,
  nodeId: string,
  round: { runId: string; round: number },
  dp: DpConfig,
): (model: tfl.LayersModel, data: ImageSet, opts: TrainOptions) => Promise<PrivateTrainResult> {
  return async (model, data, opts) => {
    const event = dpSgdPlan(data.count, opts.epochs, opts.batchSize, dp.noiseMultiplier);
    const r = await reservePrivacy(pool, { nodeId, runId: round.runId, round: round.round, event, delta: dp.delta, epsilonBudget: dp.epsilonBudget });
    if (!r.granted) {
      throw new HttpError(
        403,
        'privacy_budget_exhausted',
        `privacy_budget_exhausted: node ${nodeId} has spent ε = ${r.spent.toFixed(3)} (δ = ${dp.delta}); this round would take it to ${r.wouldBe.toFixed(3)}, past its budget of ${r.budget}`,
      );
    }
    const result = await trainLocalDp(model, data, { ...opts, dp: { noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clip } });
    // Loss and accuracy on the node's own records are not noised: releasing them would
    // leak outside the guarantee, so a DP round reports neither (null in the metrics).
    return { ...result, loss: NaN, accuracy: NaN, epsilon: r.entry.epsilonTotal };
  };
}

/** The privacy figures an update's metrics carry (none for a non-private round). */
export function privacyMetrics(result: TrainResult): { epsilon?: number } {
  return 'epsilon' in result ? { epsilon: Number((result as PrivateTrainResult).epsilon.toFixed(4)) } : {};
}

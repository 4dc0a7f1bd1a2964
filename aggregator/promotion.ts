import type pg from 'pg';
import { decodeStoredWeights } from '../services/core/codec.js';
import { referenceModelSpec, type EvalResult, type TensorSpec } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import { promotedFor, type NewPromotion } from '../services/store/promotion.js';
import { subset, type ImageSet } from '../datasets/types.js';
import { decidePromotion, type PromotionInput } from './round/decide.js';

/**
 * The aggregator's held-out digits, split in two: the validation part decides (target,
 * patience, promotion), the test part is only reported. A score that chose the model is
 * an optimistic estimate of it; the test score was never looked at by any decision.
 */
export interface HeldOutSplit {
  validation: ImageSet;
  test: ImageSet;
}

/** Pure and deterministic: alternate digits, so both halves keep the same label mix. */
export function splitHeldOut(heldOut: ImageSet): HeldOutSplit {
  const idx = Array.from({ length: heldOut.count }, (_, i) => i);
  return { validation: subset(heldOut, idx.filter((i) => i % 2 === 0)), test: subset(heldOut, idx.filter((i) => i % 2 === 1)) };
}

export type PromotePolicy = PromotionInput['policy'];

export interface PolicyDecision {
  promote: boolean;
  reason: string;
}

/** Pure: the round driver's decision (decidePromotion) with the reason the promotions history records. */
export function decideByPolicy(p: PromotionInput): PolicyDecision {
  const promote = decidePromotion(p);
  const f = (x: number) => `${(x * 100).toFixed(2)}%`;
  const score = `validation ${f(p.candidateAccuracy)}`;
  if (p.round < 1) return { promote, reason: 'an initial model is never promoted by a policy' };
  if (p.policy === 'manual') return { promote, reason: 'promotion is left to an admin (policy manual)' };
  if (p.policy === 'latest') return { promote, reason: `the latest round's model (${score})` };
  if (p.promotedAccuracy === undefined) return { promote, reason: `nothing promoted yet (${score})` };
  const by = p.minImprovement > 0 ? ` by ${f(p.minImprovement)}` : '';
  return { promote, reason: promote ? `${score} beats the promoted ${f(p.promotedAccuracy)}${by}` : `${score} does not beat the promoted ${f(p.promotedAccuracy)}${by}` };
}

/**
 * Applies a run's promotion policy after each round. The promoted version is scored on
 * the same validation digits as the candidate (once per version, cached), whatever run
 * or data it was first judged on, so the comparison is like for like.
 */
export class PolicyPromoter {
  private readonly scored = new Map<number, number>();

  constructor(
    private readonly deps: { pool: pg.Pool; validate: (flat: Float32Array) => EvalResult; tensors?: TensorSpec[] },
  ) {}

  /** Validation accuracy of the version promoted to the fleet, or undefined when none (or it cannot be loaded). */
  async promotedScore(): Promise<{ version: number; accuracy: number } | undefined> {
    const current = await promotedFor(this.deps.pool);
    if (!current) return undefined;
    let accuracy = this.scored.get(current.version);
    if (accuracy === undefined) {
      const row = await store.getModel(this.deps.pool, current.version);
      if (!row) return undefined;
      try {
        accuracy = this.deps.validate(decodeStoredWeights(row.bytes, row.checksum, this.deps.tensors ?? referenceModelSpec()).flat).accuracy;
      } catch {
        return undefined; // a promoted version that no longer loads is beaten by any good candidate
      }
      this.scored.set(current.version, accuracy);
    }
    return { version: current.version, accuracy };
  }

  /**
   * The promotion a round's model gets under its run's policy, if any: recorded by
   * completeRound in the same transaction that publishes the model, so a crash never
   * leaves a published round without the promotion its policy gave it. The test score is
   * asked for only when the version is promoted (the record keeps it).
   */
  async decide(r: { round: number; policy: PromotePolicy; minImprovement: number; validationAccuracy: number; testAccuracy: () => number }): Promise<{
    decision: PolicyDecision;
    promotion?: Omit<NewPromotion, 'version'>;
  }> {
    const promoted = r.policy === 'best' ? await this.promotedScore() : undefined;
    const decision = decideByPolicy({ policy: r.policy, round: r.round, candidateAccuracy: r.validationAccuracy, promotedAccuracy: promoted?.accuracy, minImprovement: r.minImprovement });
    if (!decision.promote) return { decision };
    return {
      decision,
      promotion: {
        by: `policy:${r.policy}`,
        reason: decision.reason,
        figures: { validationAccuracy: r.validationAccuracy, testAccuracy: r.testAccuracy(), round: r.round, replaced: promoted?.version ?? null },
      },
    };
  }

  /** Remembers a published version's validation score (it is the candidate the next round is compared with once promoted). */
  scoredAs(version: number, validationAccuracy: number): void {
    this.scored.set(version, validationAccuracy);
  }
}

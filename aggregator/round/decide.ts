/** Pure decisions of the round driver: what comes next for the run, and whether a round model is promoted. */

/** One row of the rounds table, as far as the decision goes. */
export interface RoundRecord {
  round: number;
  status: 'running' | 'completed' | 'failed';
  /** Attempts made at this round (a failed round is retried as a new attempt of the same row). */
  attempt: number;
  accuracy: number | null;
  reason?: string;
}

export interface StopRules {
  rounds: number;
  targetAccuracy: number;
  patience: number;
  maxRoundAttempts: number;
}

export type NextStep = { finish: false; round: number } | { finish: true; status: 'completed' | 'failed'; reason: string };

/**
 * What the run does next, from its rounds table alone (so a resumed run decides exactly as
 * the process that stopped would have, attempts included): stop when the last completed
 * round reached the target, when `patience` rounds brought no improvement, when a round
 * failed `maxRoundAttempts` times or the maximum of rounds is done; otherwise re-enter or
 * retry the last round, or start the next one.
 */
export function decideNext(history: readonly RoundRecord[], rules: StopRules): NextStep {
  const rows = [...history].sort((a, b) => a.round - b.round);
  const last = rows.at(-1);
  if (last?.status === 'running') return { finish: false, round: last.round };
  if (last?.status === 'failed') {
    if (last.attempt >= rules.maxRoundAttempts) return { finish: true, status: 'failed', reason: `round ${last.round} failed ${last.attempt} times: ${last.reason ?? 'quorum not reached'}` };
    return { finish: false, round: last.round };
  }
  let best = -1;
  let sinceBest = 0;
  for (const r of rows.filter((x) => x.status === 'completed')) {
    const acc = r.accuracy ?? -1;
    if (acc > best) {
      best = acc;
      sinceBest = 0;
    } else sinceBest++;
  }
  if (last) {
    if ((last.accuracy ?? 0) >= rules.targetAccuracy) return { finish: true, status: 'completed', reason: `target accuracy ${rules.targetAccuracy} reached in round ${last.round}` };
    if (sinceBest >= rules.patience) return { finish: true, status: 'completed', reason: `no improvement for ${rules.patience} rounds` };
  }
  const next = (last?.round ?? 0) + 1;
  if (next > rules.rounds) return { finish: true, status: 'completed', reason: `reached the maximum of ${rules.rounds} rounds` };
  return { finish: false, round: next };
}

export interface PromotionInput {
  policy: 'best' | 'latest' | 'manual';
  minImprovement: number;
  candidateAccuracy: number;
  /** Accuracy of the version promoted now; undefined when none is. */
  promotedAccuracy: number | undefined;
  round: number;
}

/**
 * Whether a round's model becomes the promoted version. Round 0 (the initial model) is
 * never promoted by a policy. 'best' needs the candidate to beat the promoted version by
 * minImprovement (strictly, when that is 0); 'latest' always; 'manual' never.
 */
export function decidePromotion(p: PromotionInput): boolean {
  if (p.round <= 0) return false;
  switch (p.policy) {
    case 'latest':
      return true;
    case 'manual':
      return false;
    case 'best':
      if (p.promotedAccuracy === undefined) return true;
      if (p.minImprovement === 0) return p.candidateAccuracy > p.promotedAccuracy;
      return p.candidateAccuracy >= p.promotedAccuracy + p.minImprovement;
  }
}

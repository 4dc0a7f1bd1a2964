import type pg from 'pg';
import { referenceModelSpec, type EvalResult, type TensorSpec } from '../../services/core/model.js';
import type { Logger } from '../../services/shared/log.js';
import type { Metrics } from '../../services/shared/metrics.js';
import type { TrainerTarget } from '../invoke.js';
import type { PolicyPromoter } from '../promotion.js';

/** What a round reports: stored in the rounds table, emitted to the dashboard and `edgefl up`. */
export interface NodeRoundResult {
  nodeId: string;
  status: 'ok' | 'failed' | 'late' | 'rejected_update';
  reason?: string;
  samples?: number;
  loss?: number;
  accuracy?: number;
  durationMs?: number;
  samplesPerSecond?: number;
  updateNorm?: number;
  clipped?: boolean;
  attempts?: number;
}

export interface RoundSummary {
  runId: string;
  round: number;
  status: 'completed' | 'failed';
  modelVersion: number | null;
  globalAccuracy: number | null;
  globalLoss: number | null;
  participants: string[];
  stragglers: string[];
  nodes: NodeRoundResult[];
  durationMs: number;
  trainingMs: number;
  aggregationMs: number;
  evaluationMs: number;
  overheadShare: number;
  /** The deciding figure (globalAccuracy is the same number, kept for older readers) and the reported test score. */
  validationAccuracy?: number;
  testAccuracy?: number;
  testLoss?: number;
  /** Whether the run's promotion policy promoted this round's model, and why (not). */
  promoted?: boolean;
  promotionReason?: string;
}

/** What the round steps that touch the world share: the store, the trainers, the evaluator and the observers. */
export interface RoundContext {
  pool: pg.Pool;
  /** The run's weight manifest (aggregator/run-models.ts); unset: the reference CNN's. */
  tensors?: TensorSpec[];
  log: Logger;
  metrics?: Metrics;
  trainers: () => Promise<TrainerTarget[]>;
  /** Validation digits: the figure that decides (target, patience, promotion). */
  evaluate: (flat: Float32Array) => EvalResult;
  /** Test digits: reported only. */
  test: (flat: Float32Array) => EvalResult;
  /** The run's promotion policy (aggregator/promotion.ts). */
  promotion: Pick<PolicyPromoter, 'decide' | 'scoredAs'>;
  invoke: { secret?: string; backoffMs?: number; brokerUrl?: string };
  emit: (event: 'round' | 'round-start', data: unknown) => void;
}

/** The weight manifest a round's vectors follow: the run's model, or the reference CNN. */
export const runTensors = (ctx: Pick<RoundContext, 'tensors'>): TensorSpec[] => ctx.tensors ?? referenceModelSpec();

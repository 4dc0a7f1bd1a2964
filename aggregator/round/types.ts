import type pg from 'pg';
import type { EvalResult } from '../../services/core/model.js';
import type { Logger } from '../../services/shared/log.js';
import type { Metrics } from '../../services/shared/metrics.js';
import type { TrainerTarget } from '../invoke.js';

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
}

/** What the round steps that touch the world share: the store, the trainers, the evaluator and the observers. */
export interface RoundContext {
  pool: pg.Pool;
  log: Logger;
  metrics?: Metrics;
  trainers: () => Promise<TrainerTarget[]>;
  evaluate: (flat: Float32Array) => EvalResult;
  invoke: { secret?: string; backoffMs?: number; brokerUrl?: string };
  emit: (event: 'round' | 'round-start', data: unknown) => void;
}

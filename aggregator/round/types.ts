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
  pool: import('pg').Pool;
  log: import('../../services/shared/log.js').Logger;
  metrics?: import('../../services/shared/metrics.js').Metrics;
  trainers: () => Promise<import('../invoke.js').TrainerTarget[]>;
  evaluate: (flat: Float32Array) => import('../../services/core/model.js').EvalResult;
  invoke: { secret?: string; backoffMs?: number; brokerUrl?: string };
  emit: (event: 'round' | 'round-start', data: unknown) => void;
}

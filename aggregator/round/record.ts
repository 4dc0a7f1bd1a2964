import { encodeStoredWeights } from '../../services/core/codec.js';
import type { EvalResult } from '../../services/core/model.js';
import * as store from '../../services/store/model-store.js';
import type pg from 'pg';
import { insertPromotion, type NewPromotion } from '../../services/store/promotion.js';
import type { PolicyDecision } from '../promotion.js';
import type { RunConfig } from '../run-config.js';
import type { RoundPlan } from './plan.js';
import { runTensors, type NodeRoundResult, type RoundContext, type RoundSummary } from './types.js';

/** How the round's model was judged: its test score (reported) and the promotion its run's policy gives it. */
export interface Judgement {
  /** Absent where the test split is scored only for promoted versions (asynchronous aggregations) and this one was not. */
  test?: EvalResult;
  decision: PolicyDecision;
  promotion?: Omit<NewPromotion, 'version'>;
}

export interface RoundTiming {
  started: number;
  aggregationMs: number;
  evaluationMs: number;
}

/**
 * Publishes the round's model and closes the round in one transaction (with the strategy's
 * state), then reports it: metrics, log line and the 'round' event.
 */
export async function publishRound(
  ctx: RoundContext,
  run: { id: string; bestAccuracy: number | null },
  plan: RoundPlan,
  next: Float32Array,
  evaluation: EvalResult,
  nodes: NodeRoundResult[],
  timing: RoundTiming,
  strategyState: Buffer | undefined,
  judged: Judgement,
): Promise<RoundSummary> {
  const participants = nodes.filter((n) => n.status === 'ok').map((n) => n.nodeId);
  const trainingMs = Math.max(0, ...nodes.filter((n) => n.status === 'ok').map((n) => n.durationMs ?? 0));
  const durationMs = Date.now() - timing.started;
  const summaryMetrics = {
    globalAccuracy: evaluation.accuracy,
    globalLoss: evaluation.loss,
    evaluatedOn: evaluation.samples,
    participants,
    stragglers: stragglersOf(nodes),
    nodes,
    durationMs,
    trainingMs,
    aggregationMs: timing.aggregationMs,
    evaluationMs: timing.evaluationMs,
    overheadShare: durationMs > 0 ? Math.max(0, 1 - trainingMs / durationMs) : 0,
    validationAccuracy: evaluation.accuracy,
    testAccuracy: judged.test?.accuracy,
    testLoss: judged.test?.loss,
    testedOn: judged.test?.samples,
    promoted: judged.decision.promote,
    promotionReason: judged.decision.reason,
  };
  const model = {
    ...encodeStoredWeights(runTensors(ctx), next),
    parentVersion: plan.baseVersion,
    runId: run.id,
    round: plan.round,
    metrics: {
      accuracy: evaluation.accuracy,
      loss: evaluation.loss,
      samples: evaluation.samples,
      participants: participants.length,
      validationAccuracy: evaluation.accuracy,
      testAccuracy: judged.test?.accuracy,
    },
  };
  const best = Math.max(evaluation.accuracy, run.bestAccuracy ?? 0);
  const promotion = judged.promotion;
  // The policy's promotion is written in the transaction that publishes the model: a crash never separates them.
  const record = promotion && { record: (c: pg.PoolClient, v: number) => insertPromotion(c, { ...promotion, version: v, runId: run.id }) };
  const version = await store.completeRound(ctx.pool, run.id, plan.round, model, summaryMetrics, best, strategyState, record);
  ctx.promotion.scoredAs(version, evaluation.accuracy);
  const m = ctx.metrics;
  if (promotion) {
    m?.promotedVersion.set(version);
    ctx.log.info('model promoted', { run_id: run.id, round: plan.round, model_version: version, reason: judged.decision.reason });
  }
  m?.roundSeconds.observe(durationMs / 1000);
  m?.roundParticipants.set(participants.length);
  m?.roundFailedNodes.set(plan.instructions.length - participants.length);
  m?.rounds.inc({ status: 'completed' });
  m?.modelVersion.set(version);
  m?.aggregationSeconds.observe(timing.aggregationMs / 1000);
  m?.globalAccuracy.set(evaluation.accuracy);
  const summary: RoundSummary = { runId: run.id, round: plan.round, status: 'completed', modelVersion: version, ...summaryMetrics };
  ctx.log.info('round completed', { run_id: run.id, round: plan.round, model_version: version, accuracy: evaluation.accuracy, loss: evaluation.loss, participants, duration_ms: durationMs });
  ctx.emit('round', summary);
  return summary;
}

/**
 * Which versions the test split scores: 'every' round's (synchronous rounds, each one a
 * cohort's worth of updates), or only the 'promoted' ones. An asynchronous run publishes a
 * version every K updates, three to ten times as many as rounds; the policy decides on the
 * validation split alone, and at a hundred nodes scoring each version on the test split as
 * well cost about 7 % of the federation's CPU, for a figure nobody chooses by.
 */
export type TestScoring = 'every' | 'promoted';

/**
 * Evaluates an aggregate on the validation digits (and the test digits, per `testScoring`),
 * lets the run's promotion policy judge it, and publishes it. Undefined when the run ended (an
 * abort) while it aggregated: nothing is published for an ended run.
 */
export async function judgeAndPublish(
  ctx: RoundContext,
  run: store.RunRow,
  plan: RoundPlan,
  next: Float32Array,
  nodes: NodeRoundResult[],
  timing: Omit<RoundTiming, 'evaluationMs'>,
  strategyState: Buffer | undefined,
  signal: AbortSignal,
  testScoring: TestScoring = 'every',
): Promise<RoundSummary | undefined> {
  const config = run.config as RunConfig;
  const evalStart = Date.now();
  const evaluation = ctx.evaluate(next);
  let test = testScoring === 'every' ? ctx.test(next) : undefined;
  let evaluationMs = Date.now() - evalStart;
  if (signal.aborted || (await store.getRun(ctx.pool, run.id))?.status !== 'running') return undefined;
  // Decide: the run's policy, on the validation figure, against what is promoted now.
  const promotion = await ctx.promotion.decide({
    round: plan.round,
    policy: config.promote,
    minImprovement: config.minImprovement,
    validationAccuracy: evaluation.accuracy,
    testAccuracy: () => {
      if (!test) {
        const testStart = Date.now();
        test = ctx.test(next);
        evaluationMs += Date.now() - testStart;
      }
      return test.accuracy;
    },
  });
  return publishRound(ctx, run, plan, next, evaluation, nodes, { ...timing, evaluationMs }, strategyState, { test, ...promotion });
}

/** Closes the round as failed (nothing is published) and reports it. */
export async function recordFailedRound(ctx: RoundContext, runId: string, plan: RoundPlan, nodes: NodeRoundResult[], reason: string, accepted: number, started: number): Promise<RoundSummary> {
  const participants = nodes.filter((n) => n.status === 'ok').map((n) => n.nodeId);
  const stragglers = stragglersOf(nodes);
  const metrics = { nodes, participants, stragglers, reason };
  await store.failRound(ctx.pool, runId, plan.round, metrics);
  ctx.log.warn('round failed', { run_id: runId, round: plan.round, ...metrics });
  const durationMs = Date.now() - started;
  ctx.metrics?.rounds.inc({ status: 'failed' });
  ctx.metrics?.roundSeconds.observe(durationMs / 1000);
  ctx.metrics?.roundParticipants.set(accepted);
  ctx.metrics?.roundFailedNodes.set(plan.instructions.length - accepted);
  const summary: RoundSummary = {
    runId,
    round: plan.round,
    status: 'failed',
    modelVersion: null,
    globalAccuracy: null,
    globalLoss: null,
    participants: [],
    stragglers: nodes.filter((n) => n.status !== 'ok').map((n) => n.nodeId),
    nodes,
    durationMs,
    trainingMs: 0,
    aggregationMs: 0,
    evaluationMs: 0,
    overheadShare: 1,
  };
  ctx.emit('round', summary);
  return summary;
}

function stragglersOf(nodes: NodeRoundResult[]): string[] {
  return nodes.filter((n) => n.status === 'late' || n.status === 'failed').map((n) => n.nodeId);
}

import * as store from '../../services/store/model-store.js';
import { markAggregated } from '../../services/store/async-updates.js';
import { judgeAndPublish } from '../round/record.js';
import type { RoundPlan } from '../round/plan.js';
import type { RoundContext, RoundSummary } from '../round/types.js';
import type { FitInstruction } from '../strategies.js';
import { nodeResult } from './arrival.js';
import { eligibleNodes, resetBuffer, type AsyncState } from './state.js';

/**
 * One aggregation: the full buffer becomes global version k+1 = global + η·(staleness-
 * weighted mean of deltas), recorded as round k+1 of the run so the synchronous steps
 * (evaluate, promote, publish, decide) apply unchanged. Undefined when the run ended meanwhile.
 */
export async function aggregateBuffer(ctx: RoundContext, s: AsyncState, signal: AbortSignal): Promise<RoundSummary | undefined> {
  const round = s.aggregations + 1;
  const { bufferSize, serverLearningRate, maxStaleness } = s.strategy.async;
  const nodes = s.buffered.map(nodeResult);
  const selected = [...new Set(nodes.map((n) => n.nodeId))];
  // publishRound counts the plan's instructions as the nodes asked: here, the buffered updates.
  const instructions = nodes.map((n) => ({ target: { nodeId: n.nodeId, url: '' } }) as FitInstruction);
  const plan: RoundPlan = { round, baseVersion: s.version, instructions, deadline: new Date(), quorum: bufferSize, required: bufferSize };
  const staleness = s.buffer.staleness;
  await store.openRound(ctx.pool, { runId: s.runId, round, config: { strategy: s.strategy.name, bufferSize, maxStaleness, staleness }, baseVersion: s.version, selected, quorum: bufferSize, deadline: plan.deadline });
  const aggStart = Date.now();
  const next = s.buffer.apply(s.global, serverLearningRate);
  const aggregationMs = Date.now() - aggStart;
  // Marked before publishing: a crash in between puts them back in the buffer (reopenBuffered), never into two versions.
  await markAggregated(ctx.pool, s.runId, s.buffered.map((b) => b.invocation), round);
  const run = (await store.getRun(ctx.pool, s.runId))!;
  const summary = await judgeAndPublish(ctx, run, plan, next, nodes, { started: s.since, aggregationMs }, undefined, signal, 'promoted');
  if (!summary) return undefined;
  ctx.metrics?.asyncAggregations.inc();
  s.aggregations = round;
  s.version = summary.modelVersion!;
  s.global = next;
  s.bases.set(round, next);
  // Memory stays at (concurrency + 1) models whatever maxStaleness allows: only bases still training are kept.
  const needed = new Set(s.inflight.values());
  for (const k of s.bases.keys()) if (k !== round && !needed.has(k)) s.bases.delete(k);
  resetBuffer(s);
  s.candidates = await eligibleNodes(ctx, s);
  return summary;
}

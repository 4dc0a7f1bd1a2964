import { getMaxListeners, setMaxListeners } from 'node:events';
import { decodeStoredWeights } from '../../services/core/codec.js';
import * as store from '../../services/store/model-store.js';
import { invokeTrainer, type InvokeOutcome } from '../invoke.js';
import type { RoundPlan } from './plan.js';
import { runTensors, type RoundContext } from './types.js';

/** The round's base model, refused unless its bytes are exactly what its stored checksum names. */
export async function loadGlobal(ctx: RoundContext, version: number): Promise<Float32Array> {
  const base = await store.getModel(ctx.pool, version);
  if (!base) throw new Error(`base model version ${version} does not exist`);
  return decodeStoredWeights(base.bytes, base.checksum, runTensors(ctx)).flat;
}

/** Records the planned round (or re-enters the open one) and announces it. */
export async function openPlannedRound(ctx: RoundContext, runId: string, plan: RoundPlan, strategyName: string, trainConfig: Record<string, unknown>): Promise<void> {
  const selected = plan.instructions.map((i) => i.target.nodeId);
  const row = await store.openRound(ctx.pool, { runId, round: plan.round, config: { ...trainConfig, strategy: strategyName }, baseVersion: plan.baseVersion, selected, quorum: plan.required, deadline: plan.deadline });
  if (row.status === 'running' && Date.parse(row.deadline) < plan.deadline.getTime()) await store.extendRoundDeadline(ctx.pool, runId, plan.round, plan.deadline);
  ctx.log.info('round started', { run_id: runId, round: plan.round, base_version: plan.baseVersion, selected, deadline: plan.deadline.toISOString() });
  ctx.emit('round-start', { runId, round: plan.round, selected, baseVersion: plan.baseVersion });
}

/** Sends every node its instruction and waits for all of them (each retries until the deadline, or until `maxFailures` failed attempts). */
export async function fitRound(ctx: RoundContext, runId: string, plan: RoundPlan, signal: AbortSignal, maxFailures?: number): Promise<Map<string, InvokeOutcome>> {
  const outcomes = new Map<string, InvokeOutcome>();
  const { round, baseVersion, deadline } = plan;
  // Each invocation listens on the run's signal (its request, its backoff): a round of 10+ nodes is not a leak.
  setMaxListeners(Math.max(getMaxListeners(signal), 2 * plan.instructions.length + 10), signal);
  await Promise.all(
    plan.instructions.map(async ({ target, config }) => {
      const payload = { ...config, runId, round, modelVersion: baseVersion, deadline: deadline.toISOString() };
      const outcome = await invokeTrainer(target, payload, {
        deadline,
        secret: ctx.invoke.secret,
        signal,
        backoffMs: ctx.invoke.backoffMs,
        maxFailures,
        requestId: `${runId}-r${round}-${target.nodeId}`,
        brokerUrl: ctx.invoke.brokerUrl,
        findUpdate: async () => {
          const u = await store.findUpdate(ctx.pool, runId, round, target.nodeId);
          return u && u.baseVersion === baseVersion ? { updateId: u.id, metrics: u.metrics } : undefined;
        },
      });
      outcomes.set(target.nodeId, outcome);
      if (!outcome.ok) {
        ctx.log.warn('node did not deliver', { run_id: runId, round, node: target.nodeId, reason: outcome.reason, detail: outcome.detail, attempts: outcome.attempts });
        ctx.metrics?.roundFailures.inc({ node: target.nodeId, reason: outcome.reason });
      }
    }),
  );
  return outcomes;
}

/**
 * Invokes one protocol stage on a set of nodes through the existing invocation path (a
 * direct POST, or the Broker with the outcome read from the store) and collects who
 * answered. A light stage need not wait for a vanished node until the round's deadline:
 * once `enough` nodes have answered, stragglers get `graceMs` more, then the stage ends.
 */
import { invokeTrainer, type InvokeOutcome, type TrainerTarget } from '../invoke.js';
import type { OwnRound } from '../strategies.js';
import type { SecaggStage } from '../../services/trainer/secagg-request.js';

export interface StageCall {
  stage: SecaggStage;
  targets: readonly TrainerTarget[];
  /** The event data per node (run, round, base version and deadline are added). */
  payload: (nodeId: string) => Record<string, unknown>;
  /** Broker mode: the stored row that shows this node finished the stage. */
  stored: (nodeId: string) => Promise<number | undefined>;
  /** End early once this many answered (and the grace passed); all of them when absent. */
  enough?: number;
  graceMs?: number;
}

export async function invokeStage(r: OwnRound, call: StageCall): Promise<Map<string, InvokeOutcome>> {
  const { ctx, runId, plan } = r;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  r.signal.addEventListener('abort', onAbort, { once: true });
  const outcomes = new Map<string, InvokeOutcome>();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.all(
      call.targets.map(async (target) => {
        const data = { ...call.payload(target.nodeId), runId, round: plan.round, modelVersion: plan.baseVersion, deadline: plan.deadline.toISOString() };
        const outcome = await invokeTrainer(target, data, {
          deadline: plan.deadline,
          secret: ctx.invoke.secret,
          signal: stop.signal,
          backoffMs: ctx.invoke.backoffMs,
          requestId: `${runId}-r${plan.round}-${call.stage}-${target.nodeId}`,
          brokerUrl: ctx.invoke.brokerUrl,
          findUpdate: async () => {
            const id = await call.stored(target.nodeId);
            return id === undefined ? undefined : { updateId: id, metrics: {} };
          },
        });
        outcomes.set(target.nodeId, outcome);
        const answered = [...outcomes.values()].filter((o) => o.ok).length;
        if (call.enough !== undefined && answered >= call.enough && !timer) timer = setTimeout(() => stop.abort(), call.graceMs ?? 0);
      }),
    );
  } finally {
    clearTimeout(timer);
    r.signal.removeEventListener('abort', onAbort);
  }
  for (const [nodeId, o] of outcomes) {
    if (o.ok) continue;
    ctx.log.warn('node did not complete a secure-aggregation stage', { run_id: runId, round: plan.round, node: nodeId, stage: call.stage, reason: o.reason, detail: o.detail });
    ctx.metrics?.roundFailures.inc({ node: nodeId, reason: o.reason });
  }
  return outcomes;
}

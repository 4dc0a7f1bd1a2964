/**
 * Invokes one protocol stage on a set of nodes through the existing invocation path (a
 * direct POST, or the Broker with the outcome read from the store) and collects who
 * answered. A light stage need not wait for a vanished node until the round's deadline:
 * once `enough` nodes have answered, stragglers get `graceMs` more, then the stage ends.
 */
import { invokeTrainer, type InvokeOutcome, type TrainerTarget } from '../invoke.js';
import type { OwnRound } from '../strategies.js';
import type { SecaggStage } from '../../services/trainer/secagg-request.js';

const STORED_POLL_MS = 1000;

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
  // A node whose row is stored has done the stage even if its reply was lost (it died right
  // after): once every node has answered or stored, nobody is left to wait for.
  const storedBy = new Set<string>();
  const poll = setInterval(() => {
    void Promise.all(call.targets.filter((t) => !outcomes.has(t.nodeId) && !storedBy.has(t.nodeId)).map(async (t) => ((await call.stored(t.nodeId).catch(() => undefined)) !== undefined ? storedBy.add(t.nodeId) : undefined))).then(() => {
      if (call.targets.every((t) => outcomes.get(t.nodeId)?.ok || storedBy.has(t.nodeId))) stop.abort();
    });
  }, STORED_POLL_MS);
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
    clearInterval(poll);
    clearTimeout(timer);
    r.signal.removeEventListener('abort', onAbort);
  }
  for (const [nodeId, o] of outcomes) {
    if (!o.ok && (storedBy.has(nodeId) || (await call.stored(nodeId)) !== undefined)) {
      outcomes.set(nodeId, { ok: true, updateId: 0, metrics: {}, attempts: o.attempts, ms: o.ms });
      continue;
    }
    if (o.ok) continue;
    ctx.log.warn('node did not complete a secure-aggregation stage', { run_id: runId, round: plan.round, node: nodeId, stage: call.stage, reason: o.reason, detail: o.detail });
    ctx.metrics?.roundFailures.inc({ node: nodeId, reason: o.reason });
  }
  return outcomes;
}

import { recordDispatch } from '../../services/store/async-updates.js';
import type { InvokeOutcome } from '../invoke.js';
import { fitRound } from '../round/fit.js';
import type { RoundContext } from '../round/types.js';
import type { Arrival, Invocation } from './arrival.js';
import { freeNodes, pickNode } from './schedule.js';
import type { AsyncState } from './state.js';
import { nextWarmRun, pickPreferringWarm, warmForAsync, warmthSource } from '../warmth.js';

/** Without an activator to ask, a node that came back this recently is presumed warm (Knative keeps a pod about this long: 60 s stable window + 30 s grace). */
export const PRESUMED_WARM_MS = 90_000;

/** The nodes presumed warm now: the registered view (slow devices included) where there is one, else those that came back within PRESUMED_WARM_MS. */
export function warmNow(s: Pick<AsyncState, 'lastDone'>, now: number): ReadonlySet<string> {
  const source = warmthSource();
  if (source) return warmForAsync(source);
  return new Set([...s.lastDone].filter(([, at]) => now - at < PRESUMED_WARM_MS).map(([n]) => n));
}

/** The next node: a warm one while its run lasts, else the least recently asked (aggregator/warmth.ts). */
function pickNext(s: AsyncState, now: number): string | undefined {
  const candidates = s.candidates.map((c) => c.nodeId);
  const warm = warmNow(s, now);
  // Nothing warm yet (or nothing known): the seeded draw as before, so runs without an activator keep their picks.
  if (!warm.size && !warmthSource()) return pickNode(candidates, s, now, s.config.seed, s.lastInvocation + 1);
  const nodeId = pickPreferringWarm(freeNodes(candidates, s, now), warm, s, s.config.seed, s.lastInvocation + 1);
  if (nodeId !== undefined) s.warmRun.set(nodeId, nextWarmRun(s, nodeId, warm));
  return nodeId;
}

/**
 * Asks one more node to train, from the newest global version: a pick among the free nodes
 * (warm ones first while their run lasts), recorded before it is sent. Returns undefined when no node is free; otherwise the
 * invocation in flight, which hands its outcome to `deliver` (it never rejects). It is sent
 * as a one-node round numbered by the invocation, through the synchronous driver's fitRound.
 */
export function dispatchNext(ctx: RoundContext, s: AsyncState, signal: AbortSignal, deliver: (a: Arrival) => void): Promise<void> | undefined {
  const nodeId = pickNext(s, Date.now());
  if (nodeId === undefined) return undefined;
  const target = s.candidates.find((c) => c.nodeId === nodeId)!;
  const inv: Invocation = { invocation: ++s.lastInvocation, nodeId, baseVersion: s.version, baseAggregation: s.aggregations };
  s.busy.add(nodeId);
  s.lastInvoked.set(nodeId, inv.invocation);
  s.inflight.set(inv.invocation, inv.baseAggregation);
  return (async () => {
    let outcome: InvokeOutcome | undefined;
    try {
      await recordDispatch(ctx.pool, s.runId, inv);
      const instructions = s.strategy.configureFit(inv.invocation, [target]);
      const deadline = new Date(Date.now() + s.config.roundTimeoutS * 1000);
      const plan = { round: inv.invocation, baseVersion: inv.baseVersion, instructions, deadline, quorum: 1, required: 1 };
      // One attempt: a failed node is not retried at once but cools down, and the next free node is asked instead.
      outcome = (await fitRound(ctx, s.runId, plan, signal, 1)).get(nodeId);
    } catch (e) {
      outcome = { ok: false, reason: 'unreachable', detail: `dispatch failed: ${(e as Error).message}`, attempts: 0, ms: 0 };
    }
    s.lastDone.set(nodeId, Date.now());
    deliver({ ...inv, outcome: outcome ?? { ok: false, reason: 'rejected', detail: 'the strategy gave this node no instruction', attempts: 0, ms: 0 } });
  })();
}

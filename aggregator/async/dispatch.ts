import { recordDispatch } from '../../services/store/async-updates.js';
import type { InvokeOutcome } from '../invoke.js';
import { fitRound } from '../round/fit.js';
import type { RoundContext } from '../round/types.js';
import type { Arrival, Invocation } from './arrival.js';
import { pickNode } from './schedule.js';
import type { AsyncState } from './state.js';

/**
 * Asks one more node to train, from the newest global version: a seeded pick among the free
 * nodes, recorded before it is sent. Returns undefined when no node is free; otherwise the
 * invocation in flight, which hands its outcome to `deliver` (it never rejects). It is sent
 * as a one-node round numbered by the invocation, through the synchronous driver's fitRound.
 */
export function dispatchNext(ctx: RoundContext, s: AsyncState, signal: AbortSignal, deliver: (a: Arrival) => void): Promise<void> | undefined {
  const nodeId = pickNode(s.candidates.map((c) => c.nodeId), s, Date.now(), s.config.seed, s.lastInvocation + 1);
  if (nodeId === undefined) return undefined;
  const target = s.candidates.find((c) => c.nodeId === nodeId)!;
  const inv: Invocation = { invocation: ++s.lastInvocation, nodeId, baseVersion: s.version, baseAggregation: s.aggregations };
  s.busy.add(nodeId);
  s.inflight.set(inv.invocation, inv.baseAggregation);
  return (async () => {
    let outcome: InvokeOutcome | undefined;
    try {
      await recordDispatch(ctx.pool, s.runId, inv);
      const instructions = s.strategy.configureFit(inv.invocation, [target]);
      const deadline = new Date(Date.now() + s.config.roundTimeoutS * 1000);
      const plan = { round: inv.invocation, baseVersion: inv.baseVersion, instructions, deadline, quorum: 1, required: 1 };
      outcome = (await fitRound(ctx, s.runId, plan, signal)).get(nodeId);
    } catch (e) {
      outcome = { ok: false, reason: 'unreachable', detail: `dispatch failed: ${(e as Error).message}`, attempts: 0, ms: 0 };
    }
    deliver({ ...inv, outcome: outcome ?? { ok: false, reason: 'rejected', detail: 'the strategy gave this node no instruction', attempts: 0, ms: 0 } });
  })();
}

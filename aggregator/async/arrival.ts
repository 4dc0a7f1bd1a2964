/**
 * What becomes of an invocation when it comes back: a failure cools the node down (it is
 * resampled later); an update too stale is discarded and counted; one that fails screening
 * is rejected; anything else goes into the buffer, weighted by its staleness.
 */
import * as store from '../../services/store/model-store.js';
import { recordArrival } from '../../services/store/async-updates.js';
import type { InvokeOutcome } from '../invoke.js';
import { loadGlobal } from '../round/fit.js';
import { screenUpdate, type ScreenVerdict } from '../round/screen.js';
import { runTensors, type NodeRoundResult, type RoundContext } from '../round/types.js';
import { stalenessOf } from './buffer.js';
import { cooldownMs } from './schedule.js';
import type { AsyncState, BufferedEntry } from './state.js';

/** One training asked of one node, from the global version current when it was asked. */
export interface Invocation {
  invocation: number;
  nodeId: string;
  baseVersion: number;
  baseAggregation: number;
}

export type Arrival = Invocation & { outcome: InvokeOutcome };

/** Why an invocation in flight when the driver stopped is not admitted (a resumed run draws anew). */
export const ABANDONED = 'abandoned: the driver stopped (stop, abort or shutdown) before admitting it';

export async function admitArrival(ctx: RoundContext, s: AsyncState, a: Arrival): Promise<void> {
  s.busy.delete(a.nodeId);
  s.inflight.delete(a.invocation);
  if (!a.outcome.ok && a.outcome.reason === 'stopped') return recordArrival(ctx.pool, s.runId, a.invocation, { status: 'failed', reason: ABANDONED });
  // A reply lost after the update was stored (as in a round) still delivers it.
  if (a.outcome.ok || (await store.findUpdate(ctx.pool, s.runId, a.invocation, a.nodeId))) {
    s.failures.delete(a.nodeId);
    return admitUpdate(ctx, s, a);
  }
  const failures = (s.failures.get(a.nodeId) ?? 0) + 1;
  s.failures.set(a.nodeId, failures);
  s.coolingUntil.set(a.nodeId, Date.now() + cooldownMs(failures));
  await recordArrival(ctx.pool, s.runId, a.invocation, { status: 'failed', reason: a.outcome.ok ? 'no update stored' : a.outcome.detail });
}

/** Screens the invocation's stored update against its own base and buffers it, unless it is too stale. */
export async function admitUpdate(ctx: RoundContext, s: AsyncState, inv: Invocation): Promise<void> {
  const staleness = stalenessOf(inv.baseAggregation, s.aggregations);
  const { maxStaleness } = s.strategy.async;
  ctx.metrics?.asyncStaleness.observe(staleness);
  const meta = await store.findUpdate(ctx.pool, s.runId, inv.invocation, inv.nodeId);
  const updateId = meta?.id;
  if (staleness > maxStaleness) {
    ctx.metrics?.asyncDiscarded.inc({ reason: 'stale' });
    ctx.log.info('stale update discarded', { run_id: s.runId, node: inv.nodeId, invocation: inv.invocation, staleness, max_staleness: maxStaleness });
    return recordArrival(ctx.pool, s.runId, inv.invocation, { status: 'stale', updateId, staleness, reason: `trained from aggregation ${inv.baseAggregation}, ${staleness} behind (maxStaleness ${maxStaleness})` });
  }
  const base = s.bases.get(inv.baseAggregation) ?? (await loadGlobal(ctx, inv.baseVersion));
  const policy = { spec: runTensors(ctx), maxUpdateNorm: s.config.maxUpdateNorm, normPolicy: s.config.normPolicy };
  const verdict: ScreenVerdict =
    meta && meta.baseVersion === inv.baseVersion
      ? screenUpdate({ ...meta, bytes: await store.getUpdateBytes(ctx.pool, meta.id) }, base, policy)
      : { accepted: false, reason: `no update stored from base version ${inv.baseVersion}` };
  if (!verdict.accepted) {
    ctx.metrics?.asyncDiscarded.inc({ reason: 'rejected' });
    ctx.metrics?.roundFailures.inc({ node: inv.nodeId, reason: 'rejected_update' });
    return recordArrival(ctx.pool, s.runId, inv.invocation, { status: 'rejected', updateId, staleness, reason: verdict.reason });
  }
  s.buffer.add({ weights: verdict.weights, base, samples: meta!.sampleCount, staleness });
  s.buffered.push({ invocation: inv.invocation, nodeId: inv.nodeId, samples: meta!.sampleCount, staleness, metrics: { ...meta!.metrics, updateNorm: verdict.norm, clipped: verdict.clipped }, durationMs: meta!.durationMs });
  await recordArrival(ctx.pool, s.runId, inv.invocation, { status: 'buffered', updateId, staleness });
}

/** A buffered update as its aggregation's round reports it. */
export function nodeResult(b: BufferedEntry): NodeRoundResult {
  const m = b.metrics;
  return { nodeId: b.nodeId, status: 'ok', samples: b.samples, loss: m.loss, accuracy: m.accuracy, durationMs: b.durationMs, samplesPerSecond: m.samplesPerSecond, updateNorm: m.updateNorm, clipped: m.clipped || undefined };
}

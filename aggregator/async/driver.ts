import { recordArrival, reopenBuffered } from '../../services/store/async-updates.js';
import type { RoundContext } from '../round/types.js';
import { ABANDONED, admitArrival, admitUpdate, type Arrival } from './arrival.js';
import { dispatchNext } from './dispatch.js';
import { aggregateBuffer } from './publish.js';
import { nextFreeAt } from './schedule.js';
import { concurrencyOf, eligibleNodes, openAsyncState, type AsyncState, type AsyncStrategy } from './state.js';

/** How a run ends, as the federation's round loop decides it (stop requested, target, patience, maximum). */
export type RunEnd = { status: 'completed' | 'failed' | 'stopped'; reason: string };
/** The federation's verdict after each step: an end, 'ended' (the run is over already), or undefined to go on. */
export type EndCheck = () => Promise<RunEnd | 'ended' | undefined>;

/**
 * Drives an asynchronous (FedBuff) run: keep `concurrency` nodes training, each from the
 * newest global version; admit what comes back (arrival.ts); every K buffered updates make
 * one aggregation (publish.ts). A stop is graceful, as the synchronous driver finishes its
 * round: nothing new is asked, what is in flight comes back (each by its deadline) and is
 * admitted, and what the buffer holds then makes a last aggregation. An abort, a shutdown or
 * the run's end abandons what is in flight (recorded as failed, never aggregated; a shutdown's
 * buffer stays in the store for a resumed run).
 */
export async function runAsync(ctx: RoundContext, runId: string, strategy: AsyncStrategy, signal: AbortSignal, check: EndCheck): Promise<RunEnd | undefined> {
  const s = await openAsyncState(ctx, runId, strategy);
  for (const row of await reopenBuffered(ctx.pool, runId, s.aggregations)) await admitUpdate(ctx, s, row);
  const local = new AbortController();
  const abort = () => local.abort(signal.reason);
  signal.addEventListener('abort', abort);
  const arrivals: Arrival[] = [];
  const inflight = new Set<Promise<void>>();
  let wake: (() => void) | undefined;
  const deliver = (a: Arrival) => void (arrivals.push(a), wake?.());
  /** One at a time: the K-th buffered update aggregates at once, and those after it are staler by one. False: the run ended meanwhile. */
  async function admitAll(): Promise<boolean> {
    while (arrivals.length) {
      await admitArrival(ctx, s, arrivals.shift()!);
      if (s.buffered.length >= strategy.async.bufferSize && !(await aggregateBuffer(ctx, s, local.signal))) return false;
    }
    return true;
  }
  /** After a stop: every invocation in flight comes back and is admitted; a part-full buffer makes the last aggregation. */
  async function drain(): Promise<boolean> {
    ctx.log.info('stop requested: waiting for the updates in flight', { run_id: runId, in_flight: s.busy.size, buffered: s.buffered.length });
    while (s.busy.size || arrivals.length) {
      if (local.signal.aborted) return false;
      if (!arrivals.length) await new Promise<void>((resolve) => (wake = nextWake(s, local.signal, resolve)));
      if (!(await admitAll())) return false;
    }
    return !s.buffered.length || (await aggregateBuffer(ctx, s, local.signal)) !== undefined;
  }
  try {
    // A restored buffer may already be full (its aggregation was never published).
    if (s.buffered.length >= strategy.async.bufferSize && !(await aggregateBuffer(ctx, s, local.signal))) return undefined;
    for (;;) {
      const verdict = await check();
      if (verdict && verdict !== 'ended' && verdict.status === 'stopped' && !local.signal.aborted) {
        return (await drain()) ? verdict : undefined;
      }
      if (verdict || local.signal.aborted) return verdict === 'ended' ? undefined : verdict;
      const starved = starvedFor(s);
      if (starved) return { status: 'failed', reason: starved };
      // Idle (no node known yet, or every one out of budget): look at the trainers again.
      if (!s.busy.size && !arrivals.length) s.candidates = await eligibleNodes(ctx, s);
      while (s.busy.size < concurrencyOf(s)) {
        const job = dispatchNext(ctx, s, local.signal, deliver);
        if (!job) break;
        inflight.add(job);
        void job.finally(() => inflight.delete(job));
      }
      if (!arrivals.length) await new Promise<void>((resolve) => (wake = nextWake(s, local.signal, resolve)));
      if (!(await admitAll())) return undefined;
    }
  } finally {
    local.abort('run ended');
    signal.removeEventListener('abort', abort);
    await Promise.allSettled(inflight);
    for (const a of arrivals) await recordArrival(ctx.pool, runId, a.invocation, { status: 'failed', reason: ABANDONED }).catch(() => {});
  }
}

/** Resolves `resolve` on the next arrival, when a cooling node becomes free, or on abort; returns the arrival hook. */
function nextWake(s: AsyncState, signal: AbortSignal, resolve: () => void): () => void {
  const freeAt = nextFreeAt(s.candidates.map((c) => c.nodeId), s, Date.now());
  // Nothing in flight and nothing cooling (no eligible node): look again in a second.
  const wait = freeAt !== undefined ? freeAt - Date.now() : s.busy.size === 0 ? 1000 : undefined;
  const timer = wait === undefined ? undefined : setTimeout(done, Math.max(0, wait));
  signal.addEventListener('abort', done, { once: true });
  function done() {
    clearTimeout(timer);
    signal.removeEventListener('abort', done);
    resolve();
  }
  return done;
}

/** Why the run cannot go on: no aggregation within maxRoundAttempts round timeouts (every node failing), or undefined. */
function starvedFor(s: AsyncState): string | undefined {
  const limitS = s.config.roundTimeoutS * s.config.maxRoundAttempts;
  if (Date.now() - s.since <= limitS * 1000) return undefined;
  return `aggregation ${s.aggregations + 1} got ${s.buffered.length} of ${s.strategy.async.bufferSize} updates in ${limitS} s (roundTimeoutS × maxRoundAttempts)`;
}

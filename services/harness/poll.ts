import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Ends the wait at once (e.g. the process being waited on exited); the reason is the error. */
  signal?: AbortSignal;
}

/**
 * Calls `check` until it returns something truthy and returns that. A throw from `check`
 * counts as "not yet" (a server that is not listening yet refuses the connection); the
 * last one is named in the timeout error.
 */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined | null | false> | T | undefined | null | false, opts: PollOptions = {}): Promise<T> {
  const { timeoutMs = 60_000, intervalMs = 100, signal } = opts;
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    signal?.throwIfAborted();
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    // An aborted sleep rejects with a generic AbortError; the signal's reason says why.
    await sleep(intervalMs, undefined, { signal }).catch(() => signal?.throwIfAborted());
  }
}

/** GET url until it answers 2xx (the body is read, so the connection can be reused). */
export function waitHttpOk(url: string, opts: PollOptions = {}): Promise<true> {
  return waitUntil(`${url} to answer 2xx`, async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  }, opts);
}

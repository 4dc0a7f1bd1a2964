/** Warm load with autocannon (programmatic API), with exact per-response latencies. */
import autocannon from 'autocannon';
import { PREDICT_PATH } from './setup.js';
import { latencyPercentiles, round, type Percentiles } from './stats.js';

export interface WarmRun extends Percentiles {
  connections: number;
  duration_s: number;
  requests: number;
  rps: number;
  errors: number;
  non2xx: number;
  /** autocannon's own (integer-millisecond histogram) percentiles, for cross-checking. */
  autocannon: { p50: number; p90: number; p99: number; rps_mean: number };
}

export interface LoadOptions {
  url: string;
  body: string;
  connections: number;
  /** Seconds; ignored when `amount` is given. */
  durationS?: number;
  amount?: number;
}

/**
 * POSTs `body` to the predict route. Latencies come from autocannon's per-response
 * 'response' events (sub-millisecond; autocannon's histogram keeps whole milliseconds).
 */
export async function runLoad(o: LoadOptions): Promise<WarmRun> {
  const latencies: number[] = [];
  // autocannon refuses more connections than requests (`--requests 5` at 10 connections).
  const connections = o.amount ? Math.min(o.connections, o.amount) : o.connections;
  const instance = autocannon({
    url: o.url + PREDICT_PATH,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: o.body,
    connections,
    ...(o.amount ? { amount: o.amount } : { duration: o.durationS ?? 5 }),
    timeout: 30,
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
  const r = await instance;
  // autocannon stops sending at the deadline, but the server still works through the requests
  // already queued on its event loop; a health check answers only after them, so the next run
  // does not start behind this one's backlog.
  await drain(o.url);
  const ok = r['2xx'];
  const seconds = Math.max(1e-3, (r.finish.getTime() - r.start.getTime()) / 1000);
  return {
    connections,
    duration_s: round(seconds, 2),
    requests: ok,
    rps: round(ok / seconds, 1),
    errors: r.errors,
    non2xx: r.non2xx,
    ...latencyPercentiles(latencies),
    autocannon: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, rps_mean: r.requests.average },
  };
}

/** Resolves once the server has worked through its queued requests (GET /healthz is answered after them). */
export async function drain(url: string): Promise<void> {
  try {
    const res = await fetch(url + '/healthz', { signal: AbortSignal.timeout(60_000) });
    await res.arrayBuffer();
  } catch {
    // best effort
  }
}

/**
 * hostile-serving: the "hostile serving load" fault. For --seconds (default 60) a serving
 * function (EDGEFL_MEMORY_LIMIT_MIB = the manifests' 256 MiB) gets, all at once:
 *   - --max-connections workers sending the largest legal requests its limits allow,
 *   - --fuzz-connections workers sending hostile requests (4096x4096 PNG, container bombs,
 *     deep nesting, oversize bodies, absurd shapes),
 *   - --normal-connections workers sending 1-image predictions,
 *   - a readiness probe (GET /v2/health/ready, a new connection each time) every 100 ms.
 * Reported: OOM (the process died, or its peak RSS reached the limit), 5xx, wrong answers,
 * readiness p50/p99/max, peak RSS (VmHWM) against the limit. `npm run bench -- chaos` runs it
 * as one of its faults (runHostileServing).
 */
import http from 'node:http';
import { MEMORY_LIMIT_ENV, servingLimits } from '../services/serving/limits.js';
import { readRss, spawnServing, type ServingChild } from './lib/children.js';
import { intFlag, type BenchContext, type BenchModule, type Values } from './lib/flags.js';
import { mdTable, type BenchOutput, type Target } from './lib/output.js';
import { openBenchEnv } from './lib/setup.js';
import { latencyPercentiles, round } from './lib/stats.js';
import { hostile, maxLegal, normal, type Payload } from './hostile-payloads.js';

export interface HostileParams extends Record<string, unknown> {
  seconds: number;
  memory_limit_mib: number;
  max_connections: number;
  fuzz_connections: number;
  normal_connections: number;
}

export interface HostileOutcome {
  oom: number;
  server_errors: number;
  wrong_answers: number;
  readiness: { probes: number; failed: number; p50_ms: number; p99_ms: number; max_ms: number };
  /** The same probe against the idle function just before the load: what the machine itself adds. */
  readiness_idle: { probes: number; p50_ms: number; p99_ms: number; max_ms: number };
  /** The function's own event-loop delay during the load (prom-client's nodejs_eventloop_lag_*). */
  event_loop_lag_ms: { p99: number | null; max: number | null };
  peak_rss_mib: number | null;
  memory_limit_mib: number;
  by_payload: Record<string, Record<string, number>>;
  normal_ok_ratio: number;
}

const READY_TARGET_MS = 200;

function send(url: string, p: Payload, agent: http.Agent): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(url + p.path, { method: 'POST', agent, headers: { 'content-type': p.type, 'content-length': p.body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end(p.body);
  });
}

function probe(url: string): Promise<{ ms: number; ok: boolean }> {
  const t = performance.now();
  return new Promise((resolve) => {
    const req = http.get(url + '/v2/health/ready', { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ ms: performance.now() - t, ok: res.statusCode === 200 }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ ms: performance.now() - t, ok: false }));
  });
}

/** Runs the fault against a live serving function (its pid for RSS); the function must serve a model. */
export async function runHostileServing(serving: { url: string; pid: number; alive: () => boolean }, p: HostileParams, log: (m: string) => void): Promise<HostileOutcome> {
  const limits = servingLimits({ mib: p.memory_limit_mib, source: MEMORY_LIMIT_ENV }, { maxBatch: 10_000, maxBodyBytes: 64 * 2 ** 20 });
  const legal = maxLegal(limits);
  const bad = hostile(limits);
  const small = normal();
  log(`limits at ${p.memory_limit_mib} MiB: body ${round(limits.maxBodyBytes / 2 ** 20, 1)} MiB, batch ${limits.maxBatch}, ${round(limits.imagePixelBudget / 1e6, 1)} Mpx per image request`);
  for (const l of legal) log(`largest legal: ${l.name} (${round(l.body.length / 2 ** 20, 1)} MiB)`);
  const byPayload: Record<string, Record<string, number>> = {};
  let serverErrors = 0;
  let wrong = 0;
  const record = (pl: Payload, status: number) => {
    const row = (byPayload[pl.name] ??= {});
    row[status] = (row[status] ?? 0) + 1;
    if (status >= 500) serverErrors++;
    else if (status !== 429 && !pl.expect.includes(status)) wrong++;
  };
  const until = Date.now() + p.seconds * 1000;
  const worker = async (list: Payload[], offset: number) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = offset; Date.now() < until && serving.alive(); i++) {
      const pl = list[i % list.length]!;
      const status = await send(serving.url, pl, agent);
      record(pl, status);
      // Shed: back off as Retry-After asks (a second), as a well-behaved client would.
      if (status === 429) await new Promise((r) => setTimeout(r, 1000));
    }
    agent.destroy();
  };
  const probes: { ms: number; ok: boolean }[] = [];
  const prober = async () => {
    while (Date.now() < until && serving.alive()) {
      probes.push(await probe(serving.url));
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const idleProbes: number[] = [];
  for (const stop = Date.now() + 5000; Date.now() < stop; ) {
    idleProbes.push((await probe(serving.url)).ms);
    await new Promise((r) => setTimeout(r, 100));
  }
  await scrapeLag(serving.url); // resets the lag histogram: what follows is the load's
  let sampledPeak = 0;
  const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, readRss(serving.pid)?.rss_mib ?? 0)), 50);
  await Promise.all([
    ...Array.from({ length: p.max_connections }, (_, i) => worker(legal, i)),
    ...Array.from({ length: p.fuzz_connections }, (_, i) => worker(bad, i)),
    ...Array.from({ length: p.normal_connections }, () => worker([small], 0)),
    prober(),
  ]);
  clearInterval(sampler);
  const lag = await scrapeLag(serving.url);
  const idleLat = latencyPercentiles(idleProbes, 1);
  const hwm = readRss(serving.pid)?.hwm_mib ?? null;
  const peak = hwm ?? (sampledPeak || null);
  const died = !serving.alive();
  const lat = latencyPercentiles(probes.map((x) => x.ms), 1);
  const normalRow = byPayload[small.name] ?? {};
  const normalTotal = Object.values(normalRow).reduce((a, b) => a + b, 0);
  return {
    oom: died || (peak !== null && peak >= p.memory_limit_mib) ? 1 : 0,
    server_errors: serverErrors,
    wrong_answers: wrong,
    readiness: { probes: probes.length, failed: probes.filter((x) => !x.ok).length, p50_ms: lat.p50_ms, p99_ms: lat.p99_ms, max_ms: lat.max_ms },
    readiness_idle: { probes: idleProbes.length, p50_ms: idleLat.p50_ms, p99_ms: idleLat.p99_ms, max_ms: idleLat.max_ms },
    event_loop_lag_ms: lag,
    peak_rss_mib: peak,
    memory_limit_mib: p.memory_limit_mib,
    by_payload: byPayload,
    normal_ok_ratio: normalTotal ? round((normalRow[200] ?? 0) / normalTotal, 3) : 0,
  };
}

/** The function's event-loop delay p99 and max since the last scrape, in ms. */
async function scrapeLag(url: string): Promise<{ p99: number | null; max: number | null }> {
  try {
    const text = await (await fetch(url + '/metrics', { signal: AbortSignal.timeout(5000) })).text();
    const read = (name: string) => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text);
      return m ? round(Number(m[1]) * 1000, 1) : null;
    };
    return { p99: read('nodejs_eventloop_lag_p99_seconds'), max: read('nodejs_eventloop_lag_max_seconds') };
  } catch {
    return { p99: null, max: null };
  }
}

export function hostileTargets(o: HostileOutcome): Target[] {
  const t = (name: string, target: string, measured: number | null, unit: string, met: boolean | null): Target => ({ name, target, measured, unit, met });
  return [
    t('OOM (died, or peak RSS at the limit)', '= 0', o.oom, '', o.oom === 0),
    t('5xx answers', '= 0', o.server_errors, '', o.server_errors === 0),
    t('readiness p99', `<= ${READY_TARGET_MS}`, o.readiness.p99_ms, 'ms', o.readiness.p99_ms <= READY_TARGET_MS && o.readiness.failed === 0),
    t(`peak RSS (limit ${o.memory_limit_mib} MiB)`, `< ${o.memory_limit_mib}`, o.peak_rss_mib, 'MiB', o.peak_rss_mib === null ? null : o.peak_rss_mib < o.memory_limit_mib),
  ];
}

export const hostileServing: BenchModule<HostileParams> = {
  description: 'hostile serving load: largest legal requests + a fuzz mix + normal predictions for --seconds; OOM, 5xx, readiness p99, peak RSS vs the 256 MiB limit',
  options: {
    seconds: { type: 'string' },
    'memory-limit-mib': { type: 'string' },
    'max-connections': { type: 'string' },
    'fuzz-connections': { type: 'string' },
    'normal-connections': { type: 'string' },
  },
  params: (v: Values) => ({
    seconds: intFlag(v, 'seconds', 60, 1, 3600),
    memory_limit_mib: intFlag(v, 'memory-limit-mib', 256, 64, 1 << 20),
    max_connections: intFlag(v, 'max-connections', 4, 0, 64),
    fuzz_connections: intFlag(v, 'fuzz-connections', 4, 0, 64),
    normal_connections: intFlag(v, 'normal-connections', 2, 0, 64),
  }),
  async run(p: HostileParams, ctx: BenchContext): Promise<BenchOutput> {
    const env = await openBenchEnv({ log: ctx.log });
    let child: ServingChild | undefined;
    try {
      child = await spawnServing(env.databaseUrl, env.dataDir, { [MEMORY_LIMIT_ENV]: String(p.memory_limit_mib) });
      await child.waitForLog('serving ready', 120_000);
      const c = child;
      const idle = readRss(c.pid);
      ctx.log(`serving ready, idle RSS ${idle?.rss_mib} MiB; hostile load for ${p.seconds} s`);
      const o = await runHostileServing({ url: c.url, pid: c.pid, alive: () => c.proc.exitCode === null && c.proc.signalCode === null }, p, ctx.log);
      const rows = Object.entries(o.by_payload).map(([name, counts]) => [name, Object.entries(counts).map(([s, n]) => `${s}×${n}`).join(' ')]);
      const report = `## Hostile serving load\n\nidle RSS ${idle?.rss_mib} MiB, peak ${o.peak_rss_mib} MiB (limit ${o.memory_limit_mib}); readiness p50 ${o.readiness.p50_ms} ms, p99 ${o.readiness.p99_ms} ms, max ${o.readiness.max_ms} ms over ${o.readiness.probes} probes (${o.readiness.failed} failed; idle before the load: p99 ${o.readiness_idle.p99_ms} ms); event-loop lag p99 ${o.event_loop_lag_ms.p99} ms, max ${o.event_loop_lag_ms.max} ms; normal predictions answered 200: ${o.normal_ok_ratio * 100}%\n\n${mdTable(['request', 'statuses'], rows)}\n`;
      return { params: p, results: { ...o, idle_rss_mib: idle?.rss_mib ?? null }, targets: hostileTargets(o), report, charts: [], headline: { oom: o.oom, server_errors: o.server_errors, readiness_p99_ms: o.readiness.p99_ms, readiness_idle_p99_ms: o.readiness_idle.p99_ms, event_loop_lag_max_ms: o.event_loop_lag_ms.max, peak_rss_mib: o.peak_rss_mib, memory_limit_mib: o.memory_limit_mib } };
    } finally {
      await child?.stop();
      await env.close();
    }
  },
};

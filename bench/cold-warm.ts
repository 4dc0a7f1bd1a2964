/**
 * cold-warm: cold starts of the serving function (a fresh process each time, from spawn
 * to the first successful prediction, split into phases from its 'serving ready' log
 * line) and warm latency/throughput with autocannon at several connection counts.
 * `--target knative` does the same against a deployed Knative Service: the cold start
 * is the first request after waitForScaleToZero.
 */
import { spawnServing, type ServingChild } from './lib/children.js';
import { BenchUsageError, benchmark, httpUrl, int, intList, kubeName, named, num, oneOf, type BenchContext, type ParamsOf } from './lib/flags.js';
import { runLoad, type WarmRun } from './lib/load.js';
import { TARGETS, mdTable, type BenchOutput, type Chart, type Target } from './lib/output.js';
import { ceilingFor, measureCeiling, withBenchEnv, predictBody, timedPredict, type BenchEnv, type CeilingRow } from './lib/setup.js';
import { median, ratio, round, spread } from './lib/stats.js';
import { stackedBars } from './lib/svg.js';

// ---- building blocks (also used by batch, init, memory, cost, summary) -----------------

export interface ColdStart {
  /** spawn → first successful prediction, as seen by the client. */
  total_ms: number;
  /** spawn → 'serving ready' minus the child's own ready_ms: exec, Node start-up, module loading, log pipe. */
  process_and_modules_ms: number;
  /** The child's clock at startServing(): its start-up and module load (from its time origin). */
  module_load_ms: number;
  backend_init_ms: number;
  /** DB pool and migrations check; runs while the backend initialises (the two overlap). */
  db_connect_ms: number;
  model_fetch_ms: number;
  model_decode_ms: number;
  /** Weights into the model plus one warm-up prediction (kernel compilation). */
  model_install_ms: number;
  /** ready_ms minus backend and database/model: app set-up and listen. */
  listen_ms: number;
  ready_ms: number;
  /** The client's first request after ready (first inference on the fresh process). */
  first_request_ms: number;
  backend: string;
}

export const COLD_PHASES = ['process_and_modules_ms', 'backend_init_ms', 'db_connect_ms', 'model_fetch_ms', 'model_decode_ms', 'model_install_ms', 'listen_ms', 'first_request_ms'] as const;

export const READY_TIMEOUT_MS = 180_000;

/** Starts a serving process and waits for its 'serving ready' line; returns it and the startup fields. */
export async function startServingReady(env: BenchEnv): Promise<{ child: ServingChild; ready: Record<string, unknown>; readySeenMs: number }> {
  const child = await spawnServing(env.databaseUrl, env.dataDir);
  try {
    const { fields, at } = await child.waitForLog('serving ready', READY_TIMEOUT_MS);
    return { child, ready: fields, readySeenMs: at - child.spawnedAt };
  } catch (e) {
    await child.stop();
    throw e;
  }
}

/**
 * One cold start: a fresh serving process, timed from spawn to its first successful
 * prediction with `body`. The process is stopped, unless `keep` receives it (it is warm now).
 */
export async function coldStart(env: BenchEnv, body: string, keep?: (child: ServingChild) => void): Promise<ColdStart> {
  const { child, ready, readySeenMs } = await startServingReady(env);
  let kept = false;
  try {
    const first = await timedPredict(child.url, body);
    const total = performance.now() - child.spawnedAt;
    const n = (k: string) => Number(ready[k] ?? 0);
    const readyMs = n('ready_ms');
    // Serving initialises the backend while it connects and fetches the model: those phases overlap.
    const modelReady = n('model_ready_ms');
    if (keep) {
      keep(child);
      kept = true;
    }
    return {
      total_ms: round(total, 1),
      process_and_modules_ms: round(Math.max(0, readySeenMs - readyMs), 1),
      module_load_ms: n('module_load_ms'),
      backend_init_ms: n('backend_init_ms'),
      db_connect_ms: n('db_connect_ms'),
      model_fetch_ms: n('model_fetch_ms'),
      model_decode_ms: n('model_decode_ms'),
      model_install_ms: n('model_install_ms'),
      listen_ms: Math.max(0, readyMs - modelReady),
      ready_ms: readyMs,
      first_request_ms: round(first.ms, 2),
      backend: String(ready.backend ?? 'unknown'),
    };
  } finally {
    if (!kept) await child.stop();
  }
}

/** `count` cold starts in a row; with `keepLast`, the last process is handed over (warm) instead of stopped. */
export async function coldStarts(env: BenchEnv, count: number, body: string, log: (m: string) => void, keepLast?: (child: ServingChild) => void): Promise<ColdStart[]> {
  const runs: ColdStart[] = [];
  for (let i = 0; i < count; i++) {
    const r = await coldStart(env, body, i === count - 1 ? keepLast : undefined);
    log(`cold start ${i + 1}/${count}: ${r.total_ms} ms (ready ${r.ready_ms} ms, first request ${r.first_request_ms} ms)`);
    runs.push(r);
  }
  return runs;
}

export function summariseCold(runs: ColdStart[]) {
  const phases = Object.fromEntries(COLD_PHASES.map((p) => [p, round(median(runs.map((r) => r[p])), 1)]));
  return { total_ms: spread(runs.map((r) => r.total_ms)), phase_medians_ms: phases, module_load_ms_median: round(median(runs.map((r) => r.module_load_ms)), 1) };
}

/** Warm-up (so JIT and sockets are hot), then one autocannon run per connection count. */
export async function warmRuns(url: string, body: string, connections: number[], durationS: number, log: (m: string) => void): Promise<Record<string, WarmRun>> {
  await runLoad({ url, body, connections: Math.max(...connections), durationS: Math.min(1, durationS) });
  const out: Record<string, WarmRun> = {};
  for (const c of connections) {
    const r = await runLoad({ url, body, connections: c, durationS });
    log(`warm c${c}: p50 ${r.p50_ms} ms, p90 ${r.p90_ms} ms, p99 ${r.p99_ms} ms, ${r.rps} req/s (${r.requests} requests, ${r.errors} errors, ${r.non2xx} non-2xx)`);
    out[`c${c}`] = r;
  }
  return out;
}

export function warmTable(warm: Record<string, WarmRun>, ceiling1: CeilingRow | undefined): string {
  const queueing = Object.values(warm)
    .filter((w) => w.connections > 1 && w.rps > 0)
    .map((w) => `c${w.connections}: ${round((w.connections / w.rps) * 1000, 1)} ms`);
  const note = queueing.length
    ? `\n\nOne serving process handles one prediction at a time, so with c connections kept busy the mean latency is about c ÷ req/s (Little's law): ${queueing.join(', ')}. Latency targets at c10 can only be met if req/s ≥ 10 ÷ target.`
    : '';
  return mdTable(
    ['connections', 'requests', 'p50 ms', 'p90 ms', 'p99 ms', 'req/s', 'served / in-process (req/s vs predict calls/s, batch 1)', 'errors'],
    Object.values(warm).map((w) => [w.connections, w.requests, w.p50_ms, w.p90_ms, w.p99_ms, w.rps, ratio(w.rps, ceiling1?.calls_per_s), w.errors + w.non2xx]),
  ) + note;
}

export function ceilingTable(rows: CeilingRow[]): string {
  return mdTable(['batch', 'model.predict ms (median)', 'images/s', 'calls/s', 'reps'], rows.map((r) => [r.batch, r.ms_median, r.images_per_s, r.calls_per_s, r.reps]));
}

export function coldTable(runs: ColdStart[]): string {
  return mdTable(
    ['#', 'total ms', 'process + modules', 'backend init', 'db connect', 'model fetch', 'model decode', 'model install (+warm-up)', 'listen', 'first request', 'child module_load_ms'],
    runs.map((r, i) => [i + 1, r.total_ms, r.process_and_modules_ms, r.backend_init_ms, r.db_connect_ms, r.model_fetch_ms, r.model_decode_ms, r.model_install_ms, r.listen_ms, r.first_request_ms, r.module_load_ms]),
  );
}

export function coldWarmChart(runs: ColdStart[], warm: Record<string, WarmRun>): Chart {
  const byTotal = [...runs].sort((a, b) => a.total_ms - b.total_ms);
  const pick: [string, ColdStart | undefined][] = [
    ['cold min', byTotal[0]],
    ['cold median', byTotal[(byTotal.length - 1) >> 1]],
  ];
  const bars = pick
    .filter((p): p is [string, ColdStart] => p[1] !== undefined)
    .map(([label, r]) => ({ label, parts: COLD_PHASES.map((p) => ({ name: p.replace(/_ms$/, '').replace(/_/g, ' '), value: r[p] })) }));
  for (const w of Object.values(warm)) bars.push({ label: `warm c${w.connections} p50`, parts: [{ name: 'warm request', value: w.p50_ms }] });
  return { file: 'cold-vs-warm.svg', title: 'Cold start breakdown vs warm request', svg: stackedBars({ title: 'Cold start breakdown vs warm request (1 image)', yLabel: 'milliseconds', bars }) };
}

// ---- the module ----------------------------------------------------------------------

const COLD_WARM_FLAGS = {
  target: oneOf(['local', 'knative'], 'a local serving process, or a Knative Service', { default: 'local' }),
  cold: int('cold starts (at least 1 with --target knative)', { min: 0, max: 1000, default: 10 }),
  duration: named('duration_s', num('seconds of each warm run', { above: 0, default: 5, arg: 'S' })),
  connections: intList('concurrent connections of the warm runs', { min: 1, max: 10_000, default: [1, 10, 50] }),
  url: httpUrl('knative: the Knative Service URL'),
  service: kubeName('knative: the Knative Service to wait on for scale-to-zero'),
  namespace: kubeName('knative: its namespace (default edgefl)'),
  'scale-timeout': named('scale_timeout_s', num('knative: seconds to wait for scale-to-zero (default 900)', { above: 0, arg: 'S' })),
};

/** Local: the knative-only keys stay unset; knative: all set (namespace and scale timeout defaulted). */
export type ColdWarmParams = ParamsOf<typeof COLD_WARM_FLAGS>;

export const coldWarm = benchmark({
  description: 'cold starts (fresh serving process → first prediction, by phase) and warm latency at 1/10/50 connections',
  flags: COLD_WARM_FLAGS,
  params(p): ColdWarmParams {
    const { url, service, namespace, scale_timeout_s, ...base } = p;
    if (p.target === 'local') {
      const stray = Object.entries({ url, service, namespace, 'scale-timeout': scale_timeout_s }).filter(([, v]) => v !== undefined);
      if (stray.length) throw new BenchUsageError(`${stray.map(([k]) => `--${k}`).join(', ')} only apply with --target knative`);
      return { ...base, target: 'local' };
    }
    if (!url) throw new BenchUsageError('--target knative needs --url URL (the Knative Service URL, e.g. http://serving-0.edgefl.example.com)');
    if (!service) throw new BenchUsageError('--target knative needs --service NAME (the Knative Service to wait on for scale-to-zero)');
    if (p.cold < 1) throw new BenchUsageError(`--cold must be an integer from 1 to 1000 with --target knative; got '${p.cold}'`);
    return { ...base, target: 'knative', url, service, namespace: namespace ?? 'edgefl', scale_timeout_s: scale_timeout_s ?? 900 };
  },
  // The cluster path loads the Kubernetes client only when asked for.
  run: async (p, ctx) => (p.target === 'knative' ? (await import('./cold-warm-knative.js')).runKnative(p, ctx) : runLocal(p, ctx)),
});

async function runLocal(p: ColdWarmParams, ctx: BenchContext): Promise<BenchOutput> {
  return withBenchEnv(ctx, async (env) => {
    let warmChild: ServingChild | undefined;
    const body = predictBody(1);
    ctx.log('in-process ceiling (batch 1)');
    const ceiling = measureCeiling(env.flat, [1]);
    // The last cold-started process, warm after its first request, serves the warm runs.
    const cold = await coldStarts(env, p.cold, body, ctx.log, (c) => (warmChild = c));
    if (!warmChild) {
      ctx.log('starting a serving process for the warm runs');
      warmChild = (await startServingReady(env)).child;
    }
    const warm = await warmRuns(warmChild.url, body, p.connections, p.duration_s, ctx.log);
    return localOutput(p, env, ceiling, cold, warm);
  });
}

function localOutput(p: ColdWarmParams, env: BenchEnv, ceiling: CeilingRow[], cold: ColdStart[], warm: Record<string, WarmRun>): BenchOutput {
  const c1 = ceilingFor(ceiling, 1);
  const coldSummary = cold.length ? summariseCold(cold) : null;
  const targets: Target[] = [];
  if (coldSummary) targets.push(TARGETS.coldStartMedian(coldSummary.total_ms.median));
  if (warm.c10) targets.push(TARGETS.warmC10P50(warm.c10.p50_ms), TARGETS.warmC10P99(warm.c10.p99_ms));
  const served = Object.fromEntries(Object.entries(warm).map(([k, w]) => [`${k}_rps`, ratio(w.rps, c1?.calls_per_s)]));
  return {
    backend: env.backend.name,
    params: p,
    results: {
      target: 'local',
      model_version: env.modelVersion,
      cold: coldSummary ? { ...coldSummary, runs: cold } : null,
      warm,
      ceiling,
      served_vs_in_process: served,
    },
    targets,
    report: [
      '## Cold starts',
      '',
      coldSummary
        ? `${cold.length} fresh serving processes, each timed from spawn to the first successful 1-image prediction. Total: min ${coldSummary.total_ms.min} ms, median ${coldSummary.total_ms.median} ms, p90 ${coldSummary.total_ms.p90} ms. Backend initialisation runs concurrently with the database connection and model fetch, so those columns overlap rather than add up.`
        : 'No cold starts run (--cold 0).',
      '',
      ...(cold.length ? [coldTable(cold), ''] : []),
      '## Warm (1 image per request)',
      '',
      warmTable(warm, c1),
      '',
      '## In-process ceiling',
      '',
      ceilingTable(ceiling),
    ].join('\n'),
    charts: [coldWarmChart(cold, warm)],
  };
}

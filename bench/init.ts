/**
 * init: where the model is loaded. Global scope = the serving function (model fetched,
 * decoded and built once at start-up, before the port opens). Local scope =
 * bench/local-scope-server.ts, which fetches, decodes and builds the model on every
 * request. Both cold (fresh process → first prediction) and warm (sequential requests).
 */
import { startServingReady } from './cold-warm.js';
import { freePort } from '../services/harness/ports.js';
import { distPath, spawnService, type ServiceChild } from '../services/harness/process.js';
import { benchmark, int, type BenchContext } from './lib/flags.js';
import { mdTable, type BenchOutput } from './lib/output.js';
import { ceilingFor, measureCeiling, withBenchEnv, predictBody, timedPredict, type BenchEnv } from './lib/setup.js';
import { latencyPercentiles, median, ratio, round, spread } from './lib/stats.js';
import { stackedBars } from './lib/svg.js';

const INIT_FLAGS = {
  cold: int('cold starts of each kind', { min: 0, max: 100, default: 3 }),
  requests: int('warm requests of each kind', { min: 1, max: 100_000, default: 30 }),
};

interface Started {
  url: string;
  child: ServiceChild;
}

async function startLocalScope(env: BenchEnv): Promise<Started & { readySeenMs: number }> {
  const port = await freePort();
  const child = spawnService({ name: `local-scope:${port}`, args: [distPath('bench', 'local-scope-server.js')], env: { DATABASE_URL: env.databaseUrl, PORT: String(port), EDGEFL_LOG_LEVEL: 'info' } });
  try {
    const { at } = await child.waitForLog('local-scope ready', 180_000);
    return { url: `http://127.0.0.1:${port}`, child, readySeenMs: at - child.spawnedAt };
  } catch (e) {
    await child.stop();
    throw e;
  }
}

async function startGlobalScope(env: BenchEnv): Promise<Started & { readySeenMs: number }> {
  const { child, readySeenMs } = await startServingReady(env);
  return { url: child.url, child, readySeenMs };
}

type Starter = (env: BenchEnv) => Promise<Started & { readySeenMs: number }>;

async function coldRuns(env: BenchEnv, start: Starter, count: number, body: string, label: string, log: (m: string) => void) {
  const runs: { ready_ms: number; first_request_ms: number; total_ms: number }[] = [];
  for (let i = 0; i < count; i++) {
    const s = await start(env);
    try {
      const first = await timedPredict(s.url, body);
      const total = performance.now() - s.child.spawnedAt;
      runs.push({ ready_ms: round(s.readySeenMs, 1), first_request_ms: round(first.ms, 1), total_ms: round(total, 1) });
      log(`${label} cold ${i + 1}/${count}: ${round(total, 1)} ms (first request ${round(first.ms, 1)} ms)`);
    } finally {
      await s.child.stop();
    }
  }
  return runs;
}

async function warmRun(env: BenchEnv, start: Starter, requests: number, body: string) {
  const s = await start(env);
  try {
    for (let i = 0; i < 3; i++) await timedPredict(s.url, body);
    const times: number[] = [];
    for (let i = 0; i < requests; i++) times.push((await timedPredict(s.url, body)).ms);
    return latencyPercentiles(times);
  } finally {
    await s.child.stop();
  }
}

export const init = benchmark({
  description: 'global-scope model (loaded once at start) vs local-scope model (loaded per request), cold and warm',
  flags: INIT_FLAGS,
  async run(p, ctx: BenchContext): Promise<BenchOutput> {
    return withBenchEnv(ctx, async (env) => {
      const body = predictBody(1);
      const ceiling = measureCeiling(env.flat, [1]);
      const scopes = { global: startGlobalScope, local: startLocalScope };
      const results: Record<string, unknown> = {};
      const summary: Record<string, { cold_total_median_ms: number | null; cold_first_request_median_ms: number | null; warm_p50_ms: number; warm_p90_ms: number; warm_rps_sequential: number }> = {};
      for (const [name, start] of Object.entries(scopes)) {
        const cold = await coldRuns(env, start, p.cold, body, name, ctx.log);
        const warm = await warmRun(env, start, p.requests, body);
        ctx.log(`${name} warm: p50 ${warm.p50_ms} ms, p90 ${warm.p90_ms} ms`);
        results[name] = { cold: cold.length ? { total_ms: spread(cold.map((c) => c.total_ms)), runs: cold } : null, warm };
        summary[name] = {
          cold_total_median_ms: cold.length ? round(median(cold.map((c) => c.total_ms)), 1) : null,
          cold_first_request_median_ms: cold.length ? round(median(cold.map((c) => c.first_request_ms)), 1) : null,
          warm_p50_ms: warm.p50_ms,
          warm_p90_ms: warm.p90_ms,
          warm_rps_sequential: round(1000 / warm.mean_ms, 1),
        };
      }
      const c1 = ceilingFor(ceiling, 1);
      const g = summary.global!;
      const l = summary.local!;
      return {
        backend: env.backend.name,
        params: p,
        results: {
          ...results,
          summary,
          local_over_global_warm_p50: ratio(l.warm_p50_ms, g.warm_p50_ms, 2),
          ceiling,
          served_vs_in_process: { global_sequential_rps: ratio(g.warm_rps_sequential, c1?.calls_per_s), local_sequential_rps: ratio(l.warm_rps_sequential, c1?.calls_per_s) },
        },
        targets: [],
        report: [
          '## Global vs local scope',
          '',
          `Global scope is the serving function (model loaded once before the port opens). Local scope fetches, decodes and builds the model inside every request (bench/local-scope-server.ts). Warm: ${p.requests} sequential 1-image requests after 3 untimed ones. Cold: ${p.cold} fresh processes each.`,
          '',
          mdTable(
            ['scope', 'cold total ms (median)', 'cold first request ms', 'warm p50 ms', 'warm p90 ms', 'sequential req/s', 'req/s ÷ in-process predict calls/s'],
            (['global', 'local'] as const).map((k) => [k, summary[k]!.cold_total_median_ms, summary[k]!.cold_first_request_median_ms, summary[k]!.warm_p50_ms, summary[k]!.warm_p90_ms, summary[k]!.warm_rps_sequential, ratio(summary[k]!.warm_rps_sequential, c1?.calls_per_s)]),
          ),
          '',
          `Local scope's warm p50 is ${ratio(l.warm_p50_ms, g.warm_p50_ms, 1) ?? '—'}× global scope's. In-process model.predict (batch 1): ${c1?.ms_median ?? '—'} ms.`,
        ].join('\n'),
        charts: [
          {
            file: 'init-scope.svg',
            title: 'Global vs local scope',
            svg: stackedBars({
              title: 'Model in global vs local scope (1 image)',
              yLabel: 'milliseconds',
              bars: [
                { label: 'global cold', parts: [{ name: 'cold start (spawn → 1st prediction)', value: g.cold_total_median_ms ?? 0 }] },
                { label: 'local cold', parts: [{ name: 'cold start (spawn → 1st prediction)', value: l.cold_total_median_ms ?? 0 }] },
                { label: 'global warm p50', parts: [{ name: 'warm request', value: g.warm_p50_ms }] },
                { label: 'local warm p50', parts: [{ name: 'warm request', value: l.warm_p50_ms }] },
              ],
            }),
          },
        ],
      };
    });
  },
});

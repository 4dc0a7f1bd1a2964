/**
 * batch: images per request from 1 to 10,000. Cold = the first request of that size on a
 * fresh serving process; warm = median of several requests on one warm process. Latency
 * and images/s, against model.predict in this process at the same sizes.
 */
import { startServingReady } from './cold-warm.js';
import type { ServingChild } from './lib/children.js';
import { benchmark, int, intList, named, type BenchContext } from './lib/flags.js';
import { TARGETS, mdTable, type BenchOutput, type Chart } from './lib/output.js';
import { ceilingFor, measureCeiling, withBenchEnv, predictBody, timedPredict, type BenchEnv, type CeilingRow } from './lib/setup.js';
import { median, percentile, ratio, round } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

export interface BatchRow {
  batch: number;
  cold_ms: number | null;
  warm_ms_median: number;
  warm_ms_p90: number;
  warm_images_per_s: number;
  in_process_ms: number | null;
  in_process_images_per_s: number | null;
  /** served warm images/s ÷ in-process images/s. */
  efficiency: number | null;
  request_bytes: number;
}

const BATCH_FLAGS = {
  sizes: intList('images per request', { min: 1, max: 10_000, default: [1, 10, 100, 500, 1000, 5000, 10000] }),
  reps: int('timed warm requests per size', { min: 1, max: 1000, default: 5 }),
  cold: named('cold_runs', int('fresh processes per size for the cold request', { min: 0, max: 20, default: 1 })),
};

/** Warm latency per size on one running process: one untimed request, then `reps` timed ones. */
export async function warmBatches(child: ServingChild, sizes: number[], reps: number, bodies: Map<number, string>, log: (m: string) => void) {
  const out = new Map<number, number[]>();
  for (const n of sizes) {
    const body = bodies.get(n)!;
    await timedPredict(child.url, body);
    const times: number[] = [];
    for (let i = 0; i < reps; i++) times.push((await timedPredict(child.url, body)).ms);
    log(`warm batch ${n}: median ${round(median(times), 2)} ms (${round((n * 1000) / median(times), 0)} images/s)`);
    out.set(n, times);
  }
  return out;
}

/** First request of each size on a fresh process (median over `runs` processes). */
export async function coldBatches(env: BenchEnv, sizes: number[], runs: number, bodies: Map<number, string>, log: (m: string) => void) {
  const out = new Map<number, number>();
  for (const n of sizes) {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const { child } = await startServingReady(env);
      try {
        times.push((await timedPredict(child.url, bodies.get(n)!)).ms);
      } finally {
        await child.stop();
      }
    }
    if (times.length) {
      out.set(n, median(times));
      log(`cold batch ${n}: first request ${round(median(times), 1)} ms`);
    }
  }
  return out;
}

export function batchRows(sizes: number[], warm: Map<number, number[]>, cold: Map<number, number>, ceiling: CeilingRow[], bodies: Map<number, string>): BatchRow[] {
  return sizes.map((n) => {
    const times = warm.get(n)!;
    const ms = median(times);
    const ips = (n * 1000) / ms;
    const c = ceilingFor(ceiling, n);
    return {
      batch: n,
      cold_ms: cold.has(n) ? round(cold.get(n)!, 1) : null,
      warm_ms_median: round(ms, 2),
      warm_ms_p90: round(percentile(times, 90), 2),
      warm_images_per_s: round(ips, 1),
      in_process_ms: c?.ms_median ?? null,
      in_process_images_per_s: c?.images_per_s ?? null,
      efficiency: ratio(ips, c?.images_per_s),
      request_bytes: Buffer.byteLength(bodies.get(n)!),
    };
  });
}

export function batchTable(rows: BatchRow[]): string {
  return mdTable(
    ['images/request', 'request MB', 'cold ms', 'warm ms (median)', 'warm ms (p90)', 'served images/s', 'in-process ms', 'in-process images/s', 'served / in-process'],
    rows.map((r) => [r.batch, round(r.request_bytes / 1e6, 2), r.cold_ms, r.warm_ms_median, r.warm_ms_p90, r.warm_images_per_s, r.in_process_ms, r.in_process_images_per_s, r.efficiency]),
  );
}

export function batchCharts(rows: BatchRow[]): Chart[] {
  const latency = lineChart({
    title: 'Latency vs batch size',
    xLabel: 'images per request',
    yLabel: 'milliseconds',
    logX: true,
    logY: true,
    series: [
      { name: 'served, warm (median)', points: rows.map((r) => [r.batch, r.warm_ms_median]) },
      { name: 'served, cold (1st request)', points: rows.filter((r) => r.cold_ms !== null).map((r) => [r.batch, r.cold_ms!]) },
      { name: 'in-process predict', points: rows.filter((r) => r.in_process_ms !== null).map((r) => [r.batch, r.in_process_ms!]), dashed: true },
    ],
  });
  const throughput = lineChart({
    title: 'Throughput vs batch size',
    xLabel: 'images per request',
    yLabel: 'images per second',
    logX: true,
    series: [
      { name: 'served, warm', points: rows.map((r) => [r.batch, r.warm_images_per_s]) },
      { name: 'in-process predict', points: rows.filter((r) => r.in_process_images_per_s !== null).map((r) => [r.batch, r.in_process_images_per_s!]), dashed: true },
    ],
  });
  return [
    { file: 'latency-vs-batch.svg', title: 'Latency vs batch size', svg: latency },
    { file: 'throughput-vs-batch.svg', title: 'Throughput vs batch size', svg: throughput },
  ];
}

export const batch = benchmark({
  description: 'images per request 1…10,000: cold and warm latency and images/s vs in-process predict',
  flags: BATCH_FLAGS,
  params: (p) => ({ ...p, sizes: [...p.sizes].sort((a, b) => a - b) }),
  async run(p, ctx: BenchContext): Promise<BenchOutput> {
    return withBenchEnv(ctx, async (env) => {
      const bodies = new Map(p.sizes.map((n) => [n, predictBody(n)]));
      ctx.log(`in-process ceiling (sizes ${p.sizes.join(', ')})`);
      const ceiling = measureCeiling(env.flat, p.sizes);
      const cold = await coldBatches(env, p.sizes, p.cold_runs, bodies, ctx.log);
      const child = (await startServingReady(env)).child;
      const warm = await warmBatches(child, p.sizes, p.reps, bodies, ctx.log);
      const rows = batchRows(p.sizes, warm, cold, ceiling, bodies);
      const b100 = rows.find((r) => r.batch === 100);
      return {
        backend: env.backend.name,
        params: p,
        results: { model_version: env.modelVersion, rows, ceiling, served_vs_in_process: Object.fromEntries(rows.map((r) => [`batch${r.batch}`, r.efficiency])) },
        targets: b100 ? [TARGETS.batch100Efficiency(b100.efficiency)] : [],
        report: [
          '## Batch size',
          '',
          `Warm: median of ${p.reps} requests per size on one process (after one untimed request). Cold: the first request of that size on a fresh process${p.cold_runs > 1 ? ` (median of ${p.cold_runs})` : ''}. Requests are TensorFlow Serving JSON (real digits, 3 decimals per pixel); latency includes JSON parsing on both sides.`,
          '',
          batchTable(rows),
        ].join('\n'),
        charts: batchCharts(rows),
      };
    });
  },
});

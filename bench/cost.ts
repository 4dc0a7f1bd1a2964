/**
 * cost: the serverless cost equation on measured request durations,
 *
 *   cost = requests × (memoryMB / 1024) × (ceil(duration / step) × step in s) × price_per_GB_s
 *        + requests × price_per_request
 *
 * for 10,000 images sent at 1, 5 and 10 images per request, at 128–1024 MB. Durations are
 * measured on a warm serving function (median of --samples requests); they are held
 * constant across memory sizes (locally, memory does not buy CPU as it does on Lambda).
 */
import { startServingReady } from './cold-warm.js';
import { benchmark, int, intList, named, num, type BenchContext, type ParamsOf } from './lib/flags.js';
import { mdTable, type BenchOutput, type Chart } from './lib/output.js';
import { ceilingFor, measureCeiling, withBenchEnv, predictBody, timedPredict } from './lib/setup.js';
import { mean, median, ratio, round } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const COST_FLAGS = {
  images: int('images to classify', { min: 1, max: 1e9, default: 10_000 }),
  batches: intList('images per request', { min: 1, max: 10_000, default: [1, 5, 10] }),
  memory: named('memory_mb', intList('function memory sizes (MB)', { min: 1, max: 1_000_000, default: [128, 256, 512, 1024] })),
  'price-gb-s': num('price per GB-second (USD)', { min: 0, default: 0.0000166667 }),
  'price-request': num('price per request (USD)', { min: 0, default: 0.0000002 }),
  'billing-step-ms': num('billing granularity (ms)', { above: 0, default: 100 }),
  samples: int('timed requests per batch size', { min: 1, max: 1_000_000, default: 200 }),
};

export type CostParams = ParamsOf<typeof COST_FLAGS>;

/** The equation, for one configuration. */
export function serverlessCost(o: { requests: number; memoryMb: number; durationMs: number; priceGbS: number; priceRequest: number; billingStepMs: number }) {
  const billedMs = Math.max(1, Math.ceil(o.durationMs / o.billingStepMs)) * o.billingStepMs;
  const compute = o.requests * (o.memoryMb / 1024) * (billedMs / 1000) * o.priceGbS;
  const requestsCost = o.requests * o.priceRequest;
  return { billed_ms: billedMs, compute_usd: compute, requests_usd: requestsCost, total_usd: compute + requestsCost };
}

export interface CostRow {
  images_per_request: number;
  memory_mb: number;
  requests: number;
  duration_ms: number;
  billed_ms: number;
  compute_usd: number;
  requests_usd: number;
  total_usd: number;
  /** Same equation with the in-process predict time as duration (the floor). */
  in_process_total_usd: number | null;
}

export function costRows(p: CostParams, durations: Map<number, number>, inProcess: Map<number, number>): CostRow[] {
  const rows: CostRow[] = [];
  for (const b of p.batches) {
    const requests = Math.ceil(p.images / b);
    for (const memoryMb of p.memory_mb) {
      const common = { requests, memoryMb, priceGbS: p.price_gb_s, priceRequest: p.price_request, billingStepMs: p.billing_step_ms };
      const c = serverlessCost({ ...common, durationMs: durations.get(b)! });
      const ip = inProcess.get(b);
      rows.push({
        images_per_request: b,
        memory_mb: memoryMb,
        requests,
        duration_ms: round(durations.get(b)!, 3),
        billed_ms: c.billed_ms,
        compute_usd: round(c.compute_usd, 8),
        requests_usd: round(c.requests_usd, 8),
        total_usd: round(c.total_usd, 8),
        in_process_total_usd: ip === undefined ? null : round(serverlessCost({ ...common, durationMs: ip }).total_usd, 8),
      });
    }
  }
  return rows;
}

export function costChart(rows: CostRow[], images: number): Chart {
  const batches = [...new Set(rows.map((r) => r.images_per_request))];
  return {
    file: 'cost-vs-memory.svg',
    title: 'Cost vs memory',
    svg: lineChart({
      title: `Cost of ${images.toLocaleString('en-US')} images vs memory size`,
      xLabel: 'function memory (MB)',
      yLabel: 'USD',
      logX: true,
      series: batches.map((b) => ({ name: `${b} image${b > 1 ? 's' : ''}/request`, points: rows.filter((r) => r.images_per_request === b).map((r) => [r.memory_mb, r.total_usd] as [number, number]) })),
    }),
  };
}

export const cost = benchmark({
  description: 'serverless cost equation on measured durations (10,000 images at 1/5/10 per request, 128–1024 MB)',
  flags: COST_FLAGS,
  async run(p: CostParams, ctx: BenchContext): Promise<BenchOutput> {
    return withBenchEnv(ctx, async (env) => {
      const ceiling = measureCeiling(env.flat, p.batches, 500);
      const child = (await startServingReady(env)).child;
      const durations = new Map<number, number>();
      const measured: Record<string, { median_ms: number; mean_ms: number; samples: number }> = {};
      for (const b of p.batches) {
        const body = predictBody(b);
        for (let i = 0; i < Math.min(20, p.samples); i++) await timedPredict(child.url, body);
        const times: number[] = [];
        for (let i = 0; i < p.samples; i++) times.push((await timedPredict(child.url, body)).ms);
        durations.set(b, median(times));
        measured[`b${b}`] = { median_ms: round(median(times), 3), mean_ms: round(mean(times), 3), samples: times.length };
        ctx.log(`${b} image(s)/request: median ${round(median(times), 2)} ms over ${times.length} requests`);
      }
      const inProcess = new Map(p.batches.map((b) => [b, ceilingFor(ceiling, b)!.ms_median]));
      const rows = costRows(p, durations, inProcess);
      const cheapest = [...rows].sort((a, b) => a.total_usd - b.total_usd)[0]!;
      return {
        backend: env.backend.name,
        params: p,
        results: {
          equation: 'cost = requests × (memoryMB/1024) × (ceil(duration/step)·step in s × price_gb_s) + requests × price_request',
          durations: measured,
          rows,
          cheapest: { images_per_request: cheapest.images_per_request, memory_mb: cheapest.memory_mb, total_usd: cheapest.total_usd },
          ceiling,
          served_vs_in_process: Object.fromEntries(p.batches.map((b) => [`b${b}_duration`, ratio(inProcess.get(b), durations.get(b))])),
        },
        targets: [],
        report: [
          '## Cost',
          '',
          `cost = requests × (memoryMB / 1024) × (billed duration, rounded up to ${p.billing_step_ms} ms, in s) × $${p.price_gb_s.toFixed(10).replace(/0+$/, "")}/GB-s + requests × $${p.price_request.toFixed(10).replace(/0+$/, "")}/request, for ${p.images.toLocaleString('en-US')} images. Durations: median of ${p.samples} requests on a warm serving function (client-side, so they include HTTP and JSON), held constant across memory sizes. "in-process" applies the same equation to model.predict time alone.`,
          '',
          mdTable(['images/request', 'measured ms (median)', 'in-process ms'], p.batches.map((b) => [b, round(durations.get(b)!, 2), inProcess.get(b)])),
          '',
          mdTable(
            ['images/request', 'memory MB', 'requests', 'billed ms', 'compute $', 'requests $', 'total $', 'total $ (in-process duration)'],
            rows.map((r) => [r.images_per_request, r.memory_mb, r.requests, r.billed_ms, r.compute_usd.toFixed(6), r.requests_usd.toFixed(6), r.total_usd.toFixed(6), r.in_process_total_usd?.toFixed(6)]),
          ),
          '',
          `Cheapest: ${cheapest.images_per_request} image(s)/request at ${cheapest.memory_mb} MB, $${cheapest.total_usd.toFixed(6)}.`,
        ].join('\n'),
        charts: [costChart(rows, p.images)],
      };
    });
  },
});

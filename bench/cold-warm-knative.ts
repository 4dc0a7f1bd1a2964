/** cold-warm --target knative: the same measurements against a deployed Knative Service. */
import type { BenchContext } from './lib/flags.js';
import { TARGETS, mdTable, type BenchOutput } from './lib/output.js';
import { ceilingFor, measureCeiling, predictBody, timedPredict } from './lib/setup.js';
import { ratio, round, spread } from './lib/stats.js';
import { stackedBars } from './lib/svg.js';
import { ceilingTable, warmRuns, warmTable, type ColdWarmParams } from './cold-warm.js';

/** Each cold start is the first request after waitForScaleToZero, timed by the client. */
export async function runKnative(p: ColdWarmParams, ctx: BenchContext): Promise<BenchOutput> {
  const { loadDefaultKubeConfig, waitForScaleToZero } = await import('../services/kube/discovery.js');
  const { initBackend } = await import('../services/core/backend.js');
  const { buildModel, getFlatWeights } = await import('../services/core/model.js');
  const backend = await initBackend(undefined, ctx.log);
  const model = buildModel(7);
  const ceiling = measureCeiling(getFlatWeights(model), [1]);
  model.dispose();
  const kc = await loadDefaultKubeConfig();
  const body = predictBody(1);
  const url = p.url!;
  const cold: { waited_scale_to_zero_ms: number; first_request_ms: number }[] = [];
  for (let i = 0; i < p.cold; i++) {
    ctx.log(`waiting for ${p.service} in ${p.namespace} to scale to zero (${i + 1}/${p.cold}) ...`);
    const { waitedMs } = await waitForScaleToZero(kc, p.namespace!, p.service!, p.scale_timeout_s! * 1000);
    const first = await timedPredict(url, body, 600_000);
    ctx.log(`cold request ${i + 1}/${p.cold}: ${round(first.ms, 1)} ms (waited ${waitedMs} ms for scale-to-zero)`);
    cold.push({ waited_scale_to_zero_ms: waitedMs, first_request_ms: round(first.ms, 1) });
  }
  const warm = await warmRuns(url, body, p.connections, p.duration_s, ctx.log);
  const c1 = ceilingFor(ceiling, 1);
  const total = spread(cold.map((c) => c.first_request_ms));
  return {
    backend: backend.name,
    params: p,
    results: { target: 'knative', cold: { total_ms: total, runs: cold }, warm, ceiling, served_vs_in_process: Object.fromEntries(Object.entries(warm).map(([k, w]) => [`${k}_rps`, ratio(w.rps, c1?.calls_per_s)])) },
    targets: [TARGETS.coldStartMedian(total.median), ...(warm.c10 ? [TARGETS.warmC10P50(warm.c10.p50_ms), TARGETS.warmC10P99(warm.c10.p99_ms)] : [])],
    report: [
      `## Cold starts (Knative Service ${p.service} in ${p.namespace})`,
      '',
      'Each cold start is the first request after the service scaled to zero (no pod left), timed by the client; the phases inside the pod are in its logs.',
      '',
      mdTable(['#', 'waited for scale-to-zero ms', 'first request ms'], cold.map((c, i) => [i + 1, c.waited_scale_to_zero_ms, c.first_request_ms])),
      '',
      '## Warm (1 image per request)',
      '',
      warmTable(warm, c1),
      '',
      '## In-process ceiling (this machine, not the pod)',
      '',
      ceilingTable(ceiling),
    ].join('\n'),
    charts: [
      {
        file: 'cold-vs-warm.svg',
        title: 'Cold vs warm request',
        svg: stackedBars({
          title: 'Knative cold vs warm request (1 image)',
          yLabel: 'milliseconds',
          bars: [
            { label: 'cold median', parts: [{ name: 'first request after scale-to-zero', value: total.median }] },
            ...Object.values(warm).map((w) => ({ label: `warm c${w.connections} p50`, parts: [{ name: 'warm request', value: w.p50_ms }] })),
          ],
        }),
      },
    ],
  };
}

/**
 * memory: resident set size (VmRSS from /proc/<pid>/status) of a serving function idle
 * and after N requests, and of a trainer function while it trains one epoch (sampled;
 * the peak is reported, VmHWM as a cross-check).
 */
import { freePort } from '../services/harness/ports.js';
import { startServingReady } from './cold-warm.js';
import { cliPath, readRss, spawnNode, waitHttpOk, type ServingChild, type Spawned } from './lib/children.js';
import { intFlag, type BenchContext, type BenchModule, type Values } from './lib/flags.js';
import { runLoad, type WarmRun } from './lib/load.js';
import { TARGETS, mdTable, type BenchOutput, type Chart } from './lib/output.js';
import { ceilingFor, measureCeiling, openBenchEnv, predictBody, type BenchEnv, type CeilingRow } from './lib/setup.js';
import { ratio, round } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

export interface MemoryParams extends Record<string, unknown> {
  requests: number;
  connections: number;
  max_train_samples: number;
  epochs: number;
  sample_ms: number;
}

export function parseMemory(v: Values, defaults: Partial<MemoryParams> = {}): MemoryParams {
  return {
    requests: intFlag(v, 'requests', defaults.requests ?? 10_000, 1, 10_000_000),
    connections: intFlag(v, 'connections', defaults.connections ?? 10, 1, 1000),
    max_train_samples: intFlag(v, 'max-train-samples', defaults.max_train_samples ?? 2000, 1, 1_000_000),
    epochs: intFlag(v, 'epochs', defaults.epochs ?? 1, 1, 100),
    sample_ms: intFlag(v, 'sample-ms', defaults.sample_ms ?? 50, 5, 10_000),
  };
}

export interface ServingMemory {
  idle_rss_mib: number | null;
  after_rss_mib: number | null;
  after_hwm_mib: number | null;
  requests: number;
  load: WarmRun;
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS of a serving process idle (1 s after ready) and after `requests` 1-image requests. */
export async function servingMemory(child: ServingChild, requests: number, connections: number, log: (m: string) => void): Promise<ServingMemory> {
  await settle(1000);
  const idle = readRss(child.pid);
  log(`serving idle RSS ${idle?.rss_mib} MiB; sending ${requests} requests at ${connections} connections`);
  const load = await runLoad({ url: child.url, body: predictBody(1), connections, amount: requests });
  await settle(500);
  const after = readRss(child.pid);
  log(`serving RSS after ${load.requests} requests: ${after?.rss_mib} MiB (peak ${after?.hwm_mib} MiB)`);
  return { idle_rss_mib: idle?.rss_mib ?? null, after_rss_mib: after?.rss_mib ?? null, after_hwm_mib: after?.hwm_mib ?? null, requests: load.requests, load };
}

export interface TrainerMemory {
  idle_rss_mib: number | null;
  peak_rss_mib: number | null;
  hwm_mib: number | null;
  samples: { t_ms: number; rss_mib: number }[];
  train_ms: number;
  status: number;
  max_train_samples: number;
}

/** Spawns a trainer, POSTs one round (plain JSON) and samples its RSS while it trains. */
export async function trainerMemory(env: BenchEnv, p: Pick<MemoryParams, 'max_train_samples' | 'epochs' | 'sample_ms'>, log: (m: string) => void): Promise<TrainerMemory> {
  const port = await freePort();
  const child: Spawned = spawnNode(`trainer:${port}`, [cliPath(), 'trainer'], {
    DATABASE_URL: env.databaseUrl,
    PORT: String(port),
    EDGEFL_LOG_LEVEL: 'info',
    EDGEFL_DATA_DIR: env.dataDir,
    EDGEFL_NODE_ID: '0',
    EDGEFL_NODES: '1',
    EDGEFL_MAX_TRAIN_SAMPLES: String(p.max_train_samples),
    EDGEFL_INVOKE_SECRET: '',
    EDGEFL_INSECURE: '1', // posted to directly with plain JSON, as a user would with curl
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttpOk(url + '/readyz', 180_000, child);
    await settle(1000);
    const idle = readRss(child.pid);
    log(`trainer idle RSS ${idle?.rss_mib} MiB; training ${p.epochs} epoch(s) on up to ${p.max_train_samples} samples`);
    const samples: { t_ms: number; rss_mib: number }[] = [];
    const t0 = performance.now();
    const sampler = setInterval(() => {
      const r = readRss(child.pid);
      if (r) samples.push({ t_ms: Math.round(performance.now() - t0), rss_mib: r.rss_mib });
    }, p.sample_ms);
    let status = 0;
    try {
      const res = await fetch(url + '/', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ runId: `bench-memory-${Date.now()}`, round: 1, modelVersion: env.modelVersion, epochs: p.epochs }),
        signal: AbortSignal.timeout(30 * 60_000),
      });
      status = res.status;
      const text = await res.text();
      if (!res.ok) throw new Error(`trainer answered ${res.status}: ${text.slice(0, 300)}`);
    } finally {
      clearInterval(sampler);
    }
    const trainMs = performance.now() - t0;
    const end = readRss(child.pid);
    if (end) samples.push({ t_ms: Math.round(trainMs), rss_mib: end.rss_mib });
    const peak = samples.length ? Math.max(...samples.map((s) => s.rss_mib)) : null;
    log(`trainer peak RSS during the epoch ${peak} MiB (VmHWM ${end?.hwm_mib} MiB), ${round(trainMs / 1000, 1)} s`);
    return { idle_rss_mib: idle?.rss_mib ?? null, peak_rss_mib: peak, hwm_mib: end?.hwm_mib ?? null, samples, train_ms: round(trainMs, 0), status, max_train_samples: p.max_train_samples };
  } finally {
    await child.stop();
  }
}

export function memoryTable(serving: ServingMemory, trainer: TrainerMemory): string {
  return mdTable(
    ['process', 'idle RSS MiB', 'RSS MiB after/during work', 'peak (VmHWM) MiB', 'work'],
    [
      ['serving', serving.idle_rss_mib, serving.after_rss_mib, serving.after_hwm_mib, `${serving.requests} 1-image requests (${serving.load.rps} req/s)`],
      ['trainer', trainer.idle_rss_mib, trainer.peak_rss_mib, trainer.hwm_mib, `1 round, ${trainer.max_train_samples} samples, ${round(trainer.train_ms / 1000, 1)} s`],
    ],
  );
}

export function trainerChart(trainer: TrainerMemory): Chart {
  return {
    file: 'trainer-rss.svg',
    title: 'Trainer RSS during an epoch',
    svg: lineChart({ title: 'Trainer RSS while training', xLabel: 'seconds since the round was posted', yLabel: 'RSS MiB', series: [{ name: 'trainer VmRSS', points: trainer.samples.map((s) => [s.t_ms / 1000, s.rss_mib]) }] }),
  };
}

export function memoryCeilingRatio(serving: ServingMemory, ceiling: CeilingRow[]) {
  return { load_rps: ratio(serving.load.rps, ceilingFor(ceiling, 1)?.calls_per_s) };
}

export const memory: BenchModule<MemoryParams> = {
  description: 'RSS of a serving function idle and after 10,000 requests, and of a trainer during an epoch',
  options: { requests: { type: 'string' }, connections: { type: 'string' }, 'max-train-samples': { type: 'string' }, epochs: { type: 'string' }, 'sample-ms': { type: 'string' } },
  params: (v) => parseMemory(v),
  async run(p: MemoryParams, ctx: BenchContext): Promise<BenchOutput> {
    const env = await openBenchEnv({ log: ctx.log });
    let child: ServingChild | undefined;
    try {
      const ceiling = measureCeiling(env.flat, [1]);
      child = (await startServingReady(env)).child;
      const serving = await servingMemory(child, p.requests, p.connections, ctx.log);
      await child.stop();
      const trainer = await trainerMemory(env, p, ctx.log);
      return {
        backend: env.backend.name,
        params: p,
        results: { serving, trainer, ceiling, served_vs_in_process: memoryCeilingRatio(serving, ceiling) },
        targets: [TARGETS.servingRss(serving.after_rss_mib, serving.requests), TARGETS.trainerRss(trainer.peak_rss_mib)],
        report: ['## Memory', '', 'RSS is VmRSS from /proc/<pid>/status of the child process; the trainer is sampled every ' + p.sample_ms + ' ms while it trains.', '', memoryTable(serving, trainer)].join('\n'),
        charts: [trainerChart(trainer)],
      };
    } finally {
      await child?.stop();
      await env.close();
    }
  },
};

/**
 * The one result schema every benchmark writes (result.json), the readable report
 * (report.md) and the charts (*.svg), all in the run's output folder.
 *
 * result.json:
 *   benchmark   string        name given to `npm run bench -- <name>`
 *   started_at  ISO time
 *   finished_at ISO time
 *   machine     { cpus, cpu_model, node, backend, platform, loadavg_start: [1, 5, 15 min] }
 *   params      the flags in effect (defaults filled in)
 *   results     benchmark-specific; always `ceiling` (in-process model.predict per batch
 *               size) and, where something was served, `served_vs_in_process` ratios
 *   targets     [{ name, target, measured, unit, met }]  (met null = not measured)
 *   charts      file names of the SVG charts in the folder
 *   ...headline fl and summary also put their key numbers at the top level (e.g.
 *               rounds_to_97, cold_start_ms), so `jq .cold_start_ms` works on the JSON line
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Target {
  name: string;
  target: string;
  measured: number | null;
  unit: string;
  met: boolean | null;
}

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

/** What a benchmark module returns; the dispatcher adds the envelope and writes the files. */
export interface BenchOutput {
  params: Record<string, unknown>;
  results: Record<string, unknown>;
  targets: Target[];
  /** Markdown sections (without the title, machine and targets, which the dispatcher writes). */
  report: string;
  charts: Chart[];
  /** Backend the in-process ceiling ran on. */
  backend?: string;
  /** Key numbers copied to the top level of result.json (fl, summary). */
  headline?: Record<string, unknown>;
}

export interface BenchResult {
  benchmark: string;
  started_at: string;
  finished_at: string;
  machine: { cpus: number; cpu_model: string; node: string; backend: string; platform: string; loadavg_start: number[] };
  params: Record<string, unknown>;
  results: Record<string, unknown>;
  targets: Target[];
  charts: string[];
  [headline: string]: unknown;
}

// ---- targets ---------------------------------------------------------------------

type Cmp = '<=' | '>=';
export function makeTarget(name: string, cmp: Cmp, limit: number, unit: string, measured: number | null | undefined): Target {
  const m = measured == null || !Number.isFinite(measured) ? null : measured;
  return { name, target: `${cmp === '<=' ? '≤' : '≥'} ${limit} ${unit}`.trim(), measured: m, unit, met: m === null ? null : cmp === '<=' ? m <= limit : m >= limit };
}

/** The issue's targets, each from one measured number. */
export const TARGETS = {
  coldStartMedian: (ms: number | null | undefined) => makeTarget('cold start median', '<=', 500, 'ms', ms),
  /** Tail latency relative to the median, which a loaded machine moves less than either. */
  warmC10TailRatio: (p99: number | null | undefined, p50: number | null | undefined) => makeTarget('warm 1 image c10 p99 ÷ p50', '<=', 5, '', p99 != null && p50 ? Math.round((p99 / p50) * 100) / 100 : null),
  /** Requests per core: served 1-image requests/s at 10 connections ÷ in-process batch-1 predict calls/s. */
  warmC10RpsVsInProcess: (r: number | null | undefined) => makeTarget('warm 1 image c10 requests/s ÷ in-process batch-1 calls/s', '>=', 2, '', r),
  warmC10P50: (ms: number | null | undefined) => makeTarget('warm 1 image c10 p50', '<=', 3, 'ms', ms),
  warmC10P99: (ms: number | null | undefined) => makeTarget('warm 1 image c10 p99', '<=', 15, 'ms', ms),
  batch100Efficiency: (r: number | null | undefined) => makeTarget('batch 100 served / in-process images/s (JSON request)', '>=', 0.9, '', r),
  batch100BinaryEfficiency: (r: number | null | undefined) => makeTarget('batch 100 served / in-process images/s (V2 binary tensor data)', '>=', 0.9, '', r),
  servingRss: (mib: number | null | undefined, requests: number) =>
    makeTarget(`serving RSS after ${requests.toLocaleString('en-US')} requests${requests < 10_000 ? ' (target is after 10,000)' : ''}`, '<=', 100, 'MiB', mib),
  trainerRss: (mib: number | null | undefined) => makeTarget('trainer RSS during an epoch (peak)', '<=', 250, 'MiB', mib),
  /** 1.7 on 2 cores, i.e. 85 % of linear scaling. */
  trainThreadsSpeedup: (r: number | null | undefined, threads: number) => makeTarget(`training samples/s ${threads} threads ÷ 1 thread`, '>=', Math.round(0.85 * threads * 100) / 100, '', r),
  trainVsTorch: (r: number | null | undefined, threads: number) => makeTarget(`training samples/s ÷ PyTorch at ${threads} thread(s)`, '>=', 1, '', r),
};

// ---- markdown helpers -------------------------------------------------------------

export function mdTable(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cell = (v: string | number | null | undefined) => (v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v)) ? '—' : String(v));
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

export function targetsTable(targets: Target[]): string {
  if (targets.length === 0) return '_No targets apply to this benchmark._';
  return mdTable(
    ['target', 'wanted', 'measured', 'result'],
    targets.map((t) => [t.name, t.target, t.measured === null ? null : `${t.measured}${t.unit ? ` ${t.unit}` : ''}`, t.met === null ? 'not measured' : t.met ? '**met**' : '**missed**']),
  );
}

// ---- writing ----------------------------------------------------------------------

export function machineInfo(backend: string, loadavgStart: number[]): BenchResult['machine'] {
  return {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    backend,
    platform: `${os.platform()} ${os.release()}`,
    loadavg_start: loadavgStart.map((v) => Math.round(v * 100) / 100),
  };
}

export function writeOutputs(outDir: string, name: string, startedAt: Date, loadavgStart: number[], out: BenchOutput): { result: BenchResult; report: string; headline?: Record<string, unknown> } {
  mkdirSync(outDir, { recursive: true });
  for (const c of out.charts) writeFileSync(path.join(outDir, c.file), c.svg);
  const result: BenchResult = {
    benchmark: name,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    machine: machineInfo(out.backend ?? 'unknown', loadavgStart),
    params: out.params,
    results: out.results,
    targets: out.targets,
    charts: out.charts.map((c) => c.file),
    ...(out.headline ?? {}),
  };
  writeFileSync(path.join(outDir, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  const m = result.machine;
  const report = [
    `# edgefl benchmark: ${name}`,
    '',
    `Started ${result.started_at}, finished ${result.finished_at}. Machine: ${m.cpus} × ${m.cpu_model}, Node ${m.node}, TensorFlow.js backend \`${m.backend}\`, load average at start ${m.loadavg_start.join(' / ')}.`,
    '',
    'Served numbers are compared with the in-process ceiling (model.predict in the benchmark process, same batch sizes, same run), so the ratios hold even on a busy machine where absolute numbers do not.',
    '',
    '## Targets',
    '',
    targetsTable(out.targets),
    '',
    out.report.trim(),
    '',
    ...(out.charts.length ? ['## Charts', '', ...out.charts.map((c) => `![${c.title}](${c.file})`), ''] : []),
    '## Parameters',
    '',
    '```json',
    JSON.stringify(out.params, null, 2),
    '```',
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'report.md'), report);
  return { result, report, headline: out.headline };
}

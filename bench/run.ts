/**
 * Benchmark dispatcher: `npm run bench -- <name> [flags] [--json] [--out DIR]`.
 *
 *   cold-warm  cold starts (fresh serving process) by phase, warm latency at 1/10/50 connections
 *              (--target knative --url URL --service NAME [--namespace NS] for a cluster)
 *   batch      images per request 1 … 10,000: cold and warm latency, images/s
 *   init       global-scope (model loaded at start) vs local-scope (model loaded per request)
 *   memory     serving RSS idle and after 10,000 requests; trainer peak RSS during an epoch
 *   cost       serverless cost equation on measured durations
 *   fl         a whole local federation (edgefl up), rounds to 97/98 %
 *   train      training throughput (wasm vs cpu)
 *   summary    quick cold-warm + batch 100 + memory in one go
 *   hostile-serving  largest legal + hostile requests + normal predictions for 60 s: OOM, 5xx, readiness p99, peak RSS
 *   chaos      faults injected into a live federation: kill -9, PostgreSQL restart, SIGTERM
 *   privacy    held-out accuracy against ε (DP-SGD on each node), DP-SGD samples/s against non-private
 *   secagg     secure aggregation vs plain FedAvg: round time at 3/10 nodes, bytes per node, accuracy, error
 *   scale      100 on-demand edge nodes with stragglers: sync vs async to 97 %, cold starts per update, peak RSS
 *
 * Every benchmark also measures model.predict in this process (the ceiling) and writes
 * result.json, report.md and SVG charts to --out (default bench-results/<name>-<timestamp>/).
 * With --json the result JSON is the last stdout line; without, the report is printed.
 */
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { HELP_FLAG, flagHelp, parseFlags, text, toggle } from '../services/cli/flags.js';
import { stopAll } from '../services/harness/process.js';
import { BenchUsageError, paramsOf, type BenchContext, type BenchModule } from './lib/flags.js';
import { writeOutputs, type BenchResult } from './lib/output.js';

export { BenchUsageError };
export { liveChildren } from '../services/harness/process.js';

/** Flags every benchmark takes. */
const COMMON = {
  json: toggle('print the result JSON as the last stdout line'),
  out: text('output folder (default bench-results/<name>-<timestamp>/)', { arg: 'DIR' }),
  ...HELP_FLAG,
};

type Loader = () => Promise<BenchModule<any>>;

/** Modules load lazily so one benchmark's imports never slow down or break another. */
export const BENCHMARKS: Record<string, Loader> = {
  'cold-warm': async () => (await import('./cold-warm.js')).coldWarm,
  batch: async () => (await import('./batch.js')).batch,
  init: async () => (await import('./init.js')).init,
  memory: async () => (await import('./memory.js')).memory,
  cost: async () => (await import('./cost.js')).cost,
  fl: async () => (await import('./fl.js')).fl,
  train: async () => (await import('./train.js')).train,
  summary: async () => (await import('./summary.js')).summary,
  'hostile-serving': async () => (await import('./hostile-serving.js')).hostileServing,
  chaos: async () => (await import('./chaos.js')).chaos,
  privacy: async () => (await import('./privacy.js')).privacy,
  secagg: async () => (await import('./secagg.js')).secagg,
  scale: async () => (await import('./scale.js')).scale,
};

export interface ParsedBenchArgs<P = Record<string, unknown>> {
  json: boolean;
  out?: string;
  help: boolean;
  params: P;
  module: BenchModule<any>;
}

/** Parses and validates a benchmark's flags (common --json/--out plus its own); throws BenchUsageError. */
export async function parseBenchArgs(name: string, argv: string[]): Promise<ParsedBenchArgs> {
  const load = BENCHMARKS[name];
  if (!load) throw new BenchUsageError(`unknown benchmark '${name}'; one of: ${Object.keys(BENCHMARKS).join(', ')}`);
  const module = await load();
  let values;
  try {
    values = parseFlags({ ...COMMON, ...module.flags }, argv);
  } catch (e) {
    throw new BenchUsageError(`${name}: ${(e as Error).message}`);
  }
  return { json: values.json, out: values.out, help: values.help, params: values.help ? {} : paramsFor(module, values), module };
}

function paramsFor(module: BenchModule<any, any>, values: Record<string, unknown>): Record<string, unknown> {
  const p = paramsOf(module.flags, values);
  return module.params ? module.params(p) : p;
}

export function defaultOutDir(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  return path.resolve('bench-results', `${name}-${stamp}`);
}

export interface RunOutcome {
  result: BenchResult;
  report: string;
  outDir: string;
  headline?: Record<string, unknown>;
}

/**
 * Runs one benchmark end to end and writes its files. Children it started are stopped
 * (SIGTERM) before this returns or throws.
 */
export async function runBenchmark(name: string, argv: string[], opts: { log?: (m: string) => void } = {}): Promise<RunOutcome> {
  const parsed = await parseBenchArgs(name, argv);
  const startedAt = new Date();
  const loadavg = os.loadavg();
  const outDir = path.resolve(parsed.out ?? defaultOutDir(name, startedAt));
  mkdirSync(outDir, { recursive: true });
  const ctx: BenchContext = { outDir, log: opts.log ?? ((m) => process.stderr.write(`[bench ${name}] ${m}\n`)) };
  try {
    const out = await parsed.module.run(parsed.params, ctx);
    const written = writeOutputs(outDir, name, startedAt, loadavg, out);
    return { ...written, outDir };
  } finally {
    await stopAll();
  }
}

function usage(): string {
  return `usage: npm run bench -- <name> [flags] [--json] [--out DIR]

benchmarks: ${Object.keys(BENCHMARKS).join(', ')}
  npm run bench -- <name> --help   lists that benchmark's flags`;
}

function benchHelp(name: string, module: BenchModule<any>): string {
  return `${name}: ${module.description}\n\nflags:\n${flagHelp({ ...module.flags, ...COMMON })}`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const parsed = await parseBenchArgs(name, rest);
  if (parsed.help) {
    console.log(benchHelp(name, parsed.module));
    return 0;
  }
  const { result, report, outDir, headline } = await runBenchmark(name, rest);
  process.stderr.write(`[bench ${name}] wrote ${path.join(outDir, 'result.json')}, report.md and ${result.charts.length} chart(s)\n`);
  if (parsed.json) console.log(JSON.stringify(result));
  else {
    console.log(report);
    // fl, secagg, scale: the last printed line is its key numbers as one JSON object.
    if ((name === 'fl' || name === 'secagg' || name === 'scale') && headline) console.log(JSON.stringify(headline));
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n[bench] ${signal}: stopping child processes ...\n`);
    void stopAll().finally(() => process.exit(130));
  };
  // Children lead their own process groups: signals meant for the bench reach only it, and it stops them.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, onSignal);
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Pools, timers or tfjs can keep the loop alive; the work is done.
      setTimeout(() => process.exit(code), 200).unref();
    },
    async (e: unknown) => {
      await stopAll();
      // A bad flag is one line (exit 2); anything else is a bug or an environment problem, with its stack.
      if (e instanceof BenchUsageError) console.error(`bench: ${e.message}`);
      else console.error(`bench: ${(e as Error).stack ?? String(e)}`);
      process.exit(e instanceof BenchUsageError ? 2 : 1);
    },
  );
}

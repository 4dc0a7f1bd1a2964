/**
 * scale: a hundred edge nodes on one machine (issue #14). Runs `edgefl up --nodes N` twice in
 * one go — synchronous FedAvg and the asynchronous strategy (FedBuff) — with trainers started
 * on demand behind the activator and the straggler device profile, each until 97 % held-out
 * accuracy on the digits. Per mode: wall time from run start to 97 %, rounds and useful
 * updates, updates lost, cold starts per useful update (from the activator's record), and the
 * peak RSS of the whole federation (every process under `edgefl up`, PostgreSQL included).
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ActivatorSnapshot } from '../services/harness/activator.js';
import { edgeflCli, spawnService } from '../services/harness/process.js';
import { parseRoundLines, type RoundLine } from './fl.js';
import { benchmark, int, num, text, type BenchContext } from './lib/flags.js';
import { makeTarget, mdTable, type BenchOutput } from './lib/output.js';
import { watchPeakMemory, type Role } from './lib/process-tree.js';
import { round } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const SCALE_FLAGS = {
  nodes: int('registered edge nodes', { min: 2, max: 1000, default: 100 }),
  fraction: num('share of the available nodes sampled per round (sync)', { above: 0, max: 1, default: 0.1 }),
  profile: text('device profile: stragglers, none or a JSON file', { default: 'stragglers' }),
  // 10 nodes a round at C = 0.1: with 4 processes at most 4 of them can still be warm next round
  // (≥ 0.6 cold starts per update); 6 leave room for 6 warm ones at about 190 MiB each.
  'max-active': int('trainer processes at once', { min: 1, max: 256, default: 6 }),
  'idle-s': num("idle seconds before a trainer stops (default edgefl up's 90)", { above: 0 }),
  target: num('held-out accuracy to reach', { above: 0, max: 1, default: 0.97 }),
  rounds: int('most rounds per mode', { min: 1, max: 10_000, default: 300 }),
  // 80 digits per node at 100 nodes are 3 batches an epoch: more local epochs per (costly) cold start.
  epochs: int('local epochs per update', { min: 1, max: 100, default: 5 }),
  'async-strategy': text('the asynchronous strategy', { default: 'fedbuff' }),
  'buffer-size': int('fedbuff: updates per aggregation, K', { min: 1, max: 1000, default: 3 }),
  'max-train-samples': int("cap each node's shard (smoke runs)", { min: 1 }),
  'test-size': int('held-out digits (smoke runs)', { min: 1 }),
  'timeout-min': num('give up on one mode after this many minutes', { above: 0, default: 30 }),
};

type Params = { nodes: number; fraction: number; profile: string; max_active: number; idle_s?: number; target: number; rounds: number; epochs: number; async_strategy: string; buffer_size: number; max_train_samples?: number; test_size?: number; timeout_min: number };

export interface ModeResult {
  strategy: string;
  reached: boolean;
  wall_s_to_97: number | null;
  run_wall_s: number | null;
  rounds: number;
  useful_updates: number;
  updates_lost: number;
  cold_starts: number;
  cold_starts_per_update: number | null;
  cold_start_median_ms: number | null;
  peak_active_trainers: number | null;
  peak_rss_mib: number;
  /** The same peak with shared pages split among their processes (smaps_rollup Pss). */
  peak_pss_mib: number;
  /** CPU seconds of the whole federation from spawn to exit, by role: on 2 cores the asynchronous mode is bound by this. */
  cpu_s: Record<Role, number> & { total: number };
  cpu_s_per_update: number | null;
  best_accuracy: number | null;
  exit_code: number | null;
  /** Accuracy against seconds since the run started. */
  curve: [number, number][];
}

/** Updates that counted and those lost (selected nodes that delivered nothing usable), from the round lines. */
export function updateCounts(lines: RoundLine[]): { useful: number; lost: number } {
  let useful = 0;
  let lost = 0;
  for (const l of lines) {
    const nodes = Object.values(l.nodes ?? {});
    const ok = nodes.filter((n) => n.status === 'ok').length;
    useful += l.status === 'failed' ? 0 : Array.isArray(l.participants) ? l.participants.length : typeof l.participants === 'number' ? l.participants : ok;
    lost += nodes.length - ok;
  }
  return { useful, lost };
}

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : null);

/** One `edgefl up --exit-when-done` with `strategy`; null with the reason when it could not run at all. */
async function runMode(strategy: string, p: Params, ctx: BenchContext): Promise<ModeResult | { strategy: string; skipped: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `edgefl-bench-scale-${strategy}-`));
  chmodSync(dir, 0o755);
  const jsonLog = path.join(dir, 'rounds.jsonl');
  const args = [edgeflCli(), 'up', '--exit-when-done', '--json-log', jsonLog, '--data-dir', dir, '--port', '0', '--nodes', String(p.nodes), '--fraction', String(p.fraction), '--profile', p.profile, '--max-active', String(p.max_active), '--target', String(p.target), '--rounds', String(p.rounds), '--patience', String(p.rounds), '--strategy', strategy, '--epochs', String(p.epochs)];
  if (strategy === 'fedbuff') args.push('--buffer-size', String(p.buffer_size));
  for (const [flag, v] of [['--idle-s', p.idle_s], ['--max-train-samples', p.max_train_samples], ['--test-size', p.test_size]] as const) if (v !== undefined) args.push(flag, String(v));
  try {
    const child = spawnService({ name: `edgefl-up-${strategy}`, args, env: { EDGEFL_LOG_LEVEL: 'info' }, stdout: 'pipe' });
    const memory = watchPeakMemory(child.pid);
    let runStart: number | undefined;
    let runEnd: number | undefined;
    const curve: [number, number][] = [];
    let pending = '';
    child.proc.stdout!.setEncoding('utf8');
    child.proc.stdout!.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        if (/^edgefl: run \S+: /.test(l)) runStart = performance.now();
        else if (/^edgefl: run \S+ (completed|failed|stopped)/.test(l)) runEnd = performance.now();
        const acc = /global (\d+\.\d+)%/.exec(l);
        if (acc && runStart !== undefined) curve.push([round((performance.now() - runStart) / 1000, 1), Number(acc[1]) / 100]);
        if (l.trim()) ctx.log(`${strategy}: ${l}`);
      }
    });
    let stoppedAt: number | undefined;
    const timer = setTimeout(() => {
      stoppedAt = performance.now();
      ctx.log(`${strategy}: timed out after ${p.timeout_min} min; stopping the federation`);
      void child.stop();
    }, p.timeout_min * 60_000);
    const code = await child.exited;
    clearTimeout(timer);
    const peak = memory.stop();
    if (runStart === undefined) return { strategy, skipped: `edgefl up --strategy ${strategy} exited (${code}) before starting a run: ${child.tail.slice(-3).join(' ').slice(0, 300)}` };
    const lines = existsSync(jsonLog) ? parseRoundLines(readFileSync(jsonLog, 'utf8')) : [];
    const snapshotFile = path.join(dir, 'activator.json');
    const snap = existsSync(snapshotFile) ? (JSON.parse(readFileSync(snapshotFile, 'utf8')) as ActivatorSnapshot) : undefined;
    const best = lines.length ? Math.max(...lines.map((l) => l.global_accuracy ?? 0)) : null;
    const reached = best !== null && best >= p.target;
    // Stopped by the time limit: the run's wall time is up to the stop (it did not reach the target).
    const end = runEnd ?? stoppedAt;
    const runWall = end !== undefined ? (end - runStart) / 1000 : null;
    const { useful, lost } = updateCounts(lines);
    const cpuTotal = round(Object.values(peak.cpuSeconds).reduce((a, b) => a + b, 0), 1);
    const coldStarts = snap?.coldStarts ?? 0;
    return {
      strategy,
      reached,
      wall_s_to_97: reached && runWall !== null ? round(runWall, 1) : null,
      run_wall_s: runWall === null ? null : round(runWall, 1),
      rounds: lines.length,
      useful_updates: useful,
      updates_lost: lost,
      cold_starts: coldStarts,
      cold_starts_per_update: useful ? round(coldStarts / useful, 3) : null,
      cold_start_median_ms: median((snap?.recentColdStarts ?? []).filter((e) => e.ok).map((e) => e.ms)),
      peak_active_trainers: snap?.peakActive ?? null,
      peak_rss_mib: peak.rssMib,
      peak_pss_mib: peak.pssMib,
      cpu_s: { ...peak.cpuSeconds, total: cpuTotal },
      cpu_s_per_update: useful ? round(cpuTotal / useful, 3) : null,
      best_accuracy: best,
      exit_code: code,
      curve,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const isRun = (m: ModeResult | { skipped: string } | null): m is ModeResult => m !== null && !('skipped' in m);

export const scale = benchmark({
  description: 'a hundred on-demand edge nodes with stragglers: sync FedAvg vs async side by side, time to 97 %, cold starts per update, peak RSS',
  flags: SCALE_FLAGS,
  async run(params, ctx): Promise<BenchOutput> {
    const p = params as Params;
    const sync = await runMode('fedavg', p, ctx);
    const asyncRun = await runMode(p.async_strategy, p, ctx);
    const s = isRun(sync) ? sync : null;
    const a = isRun(asyncRun) ? asyncRun : null;
    const speedup = s?.wall_s_to_97 && a?.wall_s_to_97 ? round(s.wall_s_to_97 / a.wall_s_to_97, 2) : null;
    // Sync stopped short of the target (the time limit) while async got there: the ratio is at least this.
    const speedupAtLeast = !s?.reached && s?.run_wall_s && a?.wall_s_to_97 ? round(s.run_wall_s / a.wall_s_to_97, 2) : null;
    const coldPerUpdate = a?.cold_starts_per_update ?? s?.cold_starts_per_update ?? null;
    const peakRss = Math.max(s?.peak_rss_mib ?? 0, a?.peak_rss_mib ?? 0) || null;
    const peakPss = Math.max(s?.peak_pss_mib ?? 0, a?.peak_pss_mib ?? 0) || null;
    const strip = (m: ModeResult | null) => (m ? { ...m, curve: undefined } : null);
    const headline = {
      sync: strip(s) ?? sync,
      async: strip(a) ?? asyncRun,
      speedup,
      speedup_at_least: speedupAtLeast,
      cold_starts_per_update: coldPerUpdate,
      cold_starts_per_update_of: a ? 'async' : 'sync',
      peak_rss_mib: peakRss,
      peak_pss_mib: peakPss,
    };
    const row = (m: ModeResult | null, name: string, why?: string) =>
      m ? [name, m.reached ? 'yes' : 'no', m.wall_s_to_97, m.rounds, m.useful_updates, m.updates_lost, m.cold_starts, m.cold_starts_per_update, m.cold_start_median_ms, m.peak_active_trainers, m.peak_rss_mib, m.peak_pss_mib] : [name, `not run: ${why ?? ''}`];
    return {
      params: p,
      headline,
      results: { ...headline, sync_curve: s?.curve ?? [], async_curve: a?.curve ?? [] },
      targets: [
        makeTarget(`sync reaches ${p.target * 100} % with ${p.nodes} nodes (${p.profile})`, '>=', p.target, '', s?.best_accuracy),
        makeTarget('async speed-up to 97 % over sync', '>=', 2, 'x', speedup),
        makeTarget('cold starts per useful update', '<=', 0.5, '', coldPerUpdate),
        makeTarget(`peak RSS of the whole federation at ${p.nodes} nodes`, '<=', 3072, 'MiB', peakRss),
      ],
      report: [
        '## A hundred edge nodes on one machine',
        '',
        `\`edgefl up --nodes ${p.nodes} --fraction ${p.fraction} --profile ${p.profile} --max-active ${p.max_active}\`, once per mode, until ${p.target * 100} % held-out accuracy (built-in digits). Trainers start on demand behind the activator; wall time counts from the run's start (PostgreSQL and serving start-up excluded).`,
        '',
        mdTable(['mode', 'reached', 'wall s to target', 'rounds', 'useful updates', 'lost', 'cold starts', 'cold starts / update', 'cold start median ms', 'peak trainers', 'peak RSS MiB', 'peak PSS MiB'], [
          row(s, 'sync (fedavg)', 'skipped' in sync ? sync.skipped : undefined),
          row(a, `async (${p.async_strategy})`, 'skipped' in asyncRun ? asyncRun.skipped : undefined),
        ]),
        '',
        `Speed-up (sync wall time / async wall time): ${speedup ?? (speedupAtLeast ? `at least ${speedupAtLeast} (sync did not reach the target in ${s?.run_wall_s} s)` : '—')}.`,
        '',
        '### CPU of the whole federation',
        '',
        'From spawn to exit, PostgreSQL and start-up included, summed over every process of the tree (/proc utime + stime, sampled every 0.5 s). Synchronous rounds wait on slow devices, which sleep; the asynchronous mode keeps the cores busy, so its wall time follows its CPU per useful update.',
        '',
        mdTable(['mode', 'CPU s', 'trainers', 'aggregator (edgefl up)', 'PostgreSQL', 'serving', 'CPU s per useful update'], [s, a].flatMap((m, i) => (m ? [[i ? `async (${p.async_strategy})` : 'sync (fedavg)', m.cpu_s.total, m.cpu_s.trainer, m.cpu_s.aggregator, m.cpu_s.postgres, m.cpu_s.serving, m.cpu_s_per_update]] : []))),
      ].join('\n'),
      charts: [
        {
          file: 'scale-accuracy.svg',
          title: 'Held-out accuracy against wall time',
          svg: lineChart({ title: 'Held-out accuracy against wall time', xLabel: 'seconds since the run started', yLabel: 'held-out accuracy', series: [{ name: 'sync', points: s?.curve ?? [] }, { name: 'async', points: a?.curve ?? [] }] }),
        },
      ],
    };
  },
});

/**
 * fl: a whole local federation through `edgefl up --exit-when-done --json-log FILE`
 * (3 nodes, Dirichlet alpha 0.5, built-in digits by default), read back from its JSON
 * lines: rounds to 97 % and 98 %, final accuracy, wall time, coordination overhead.
 */
import { existsSync, mkdtempSync, chmodSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights } from '../services/core/model.js';
import { freePort } from '../services/harness/ports.js';
import { edgeflCli, spawnService } from '../services/harness/process.js';
import { benchmark, int, num, type BenchContext } from './lib/flags.js';
import { mdTable, type BenchOutput } from './lib/output.js';
import { measureCeiling } from './lib/setup.js';
import { mean, round } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const FL_FLAGS = {
  nodes: int('edge nodes', { min: 1, max: 32, default: 3 }),
  rounds: int('maximum rounds', { min: 1, max: 10_000, default: 20 }),
  alpha: num('Dirichlet concentration', { above: 0, default: 0.5 }),
  target: num('stop at this held-out accuracy', { above: 0, default: 0.99 }),
  epochs: int('local epochs per round (default: edgefl up\'s)', { min: 1, max: 100 }),
  'max-train-samples': int("cap each node's shard", { min: 1, max: 10_000_000 }),
  'timeout-min': num('stop the federation after this many minutes', { above: 0, default: 120 }),
};

export interface RoundLine {
  run_id: string;
  round: number;
  status?: string;
  global_accuracy: number | null;
  global_loss: number | null;
  model_version: number | null;
  duration_ms: number;
  training_ms: number;
  overhead_share: number | null;
  participants: number | string[];
  nodes: Record<string, { status: string; accuracy: number | null; duration_ms: number | null }>;
}

/** Parses `edgefl up --json-log` lines (blank and non-JSON lines are skipped). */
export function parseRoundLines(text: string): RoundLine[] {
  return text
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as RoundLine);
}

export function roundsTo(lines: RoundLine[], accuracy: number): number | null {
  return lines.find((l) => (l.global_accuracy ?? 0) >= accuracy)?.round ?? null;
}

export function flHeadline(lines: RoundLine[], wallS: number) {
  const shares = lines.map((l) => l.overhead_share).filter((s): s is number => typeof s === 'number' && Number.isFinite(s));
  const last = [...lines].reverse().find((l) => l.global_accuracy !== null);
  return {
    rounds_to_97: roundsTo(lines, 0.97),
    rounds_to_98: roundsTo(lines, 0.98),
    final_accuracy: last?.global_accuracy ?? null,
    best_accuracy: lines.length ? Math.max(...lines.map((l) => l.global_accuracy ?? 0)) : null,
    rounds: lines.length,
    wall_s: round(wallS, 1),
    overhead_share: shares.length ? round(mean(shares), 4) : null,
  };
}

export function roundsTable(lines: RoundLine[]): string {
  return mdTable(
    ['round', 'status', 'global accuracy', 'loss', 'model', 'round s', 'training s', 'overhead share', 'participants', 'nodes'],
    lines.map((l) => [
      l.round,
      l.status ?? 'completed',
      l.global_accuracy === null ? null : `${(l.global_accuracy * 100).toFixed(2)} %`,
      l.global_loss === null ? null : round(l.global_loss, 4),
      l.model_version === null ? null : `v${l.model_version}`,
      round(l.duration_ms / 1000, 1),
      round(l.training_ms / 1000, 1),
      l.overhead_share === null ? null : round(l.overhead_share, 3),
      Array.isArray(l.participants) ? l.participants.length : l.participants,
      Object.entries(l.nodes ?? {}).map(([id, n]) => `${id} ${n.status}${n.accuracy !== null ? ` ${(n.accuracy * 100).toFixed(1)}%` : ''}`).join(', '),
    ]),
  );
}

export const fl = benchmark({
  description: 'a whole local federation (edgefl up): rounds to 97/98 %, final accuracy, wall time, overhead share',
  flags: FL_FLAGS,
  async run(p, ctx: BenchContext): Promise<BenchOutput> {
    const backend = await initBackend(undefined, ctx.log);
    const seedModel = buildModel(7);
    const ceiling = measureCeiling(getFlatWeights(seedModel), [1, 10, 100], 500);
    seedModel.dispose();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-bench-fl-'));
    chmodSync(dir, 0o755);
    const jsonLog = path.join(dir, 'rounds.jsonl');
    const args = [edgeflCli(), 'up', '--exit-when-done', '--json-log', jsonLog, '--nodes', String(p.nodes), '--partition', 'dirichlet', '--alpha', String(p.alpha), '--dataset', 'mnist', '--rounds', String(p.rounds), '--target', String(p.target), '--port', String(await freePort()), '--data-dir', dir];
    if (p.epochs !== undefined) args.push('--epochs', String(p.epochs));
    if (p.max_train_samples !== undefined) args.push('--max-train-samples', String(p.max_train_samples));
    try {
      const t0 = performance.now();
      const child = spawnService({ name: 'edgefl-up', args, env: { EDGEFL_LOG_LEVEL: 'info' }, stdout: 'pipe' });
      child.proc.stdout!.setEncoding('utf8');
      let pending = '';
      child.proc.stdout!.on('data', (chunk: string) => {
        pending += chunk;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const l of lines) if (l.trim()) ctx.log(l);
      });
      const timer = setTimeout(() => {
        ctx.log(`timed out after ${p.timeout_min} min; stopping the federation`);
        void child.stop();
      }, p.timeout_min * 60_000);
      const code = await child.exited;
      clearTimeout(timer);
      const wallS = (performance.now() - t0) / 1000;
      const lines = existsSync(jsonLog) ? parseRoundLines(readFileSync(jsonLog, 'utf8')) : [];
      if (code !== 0 && lines.length === 0) throw new Error(`edgefl up exited with code ${code} before any round: ${child.tail.slice(-8).join('\n  ')}`);
      const headline = flHeadline(lines, wallS);
      return {
        backend: backend.name,
        params: p,
        headline,
        results: { ...headline, exit_code: code, rounds_log: lines, ceiling },
        targets: [],
        report: [
          '## Federated learning',
          '',
          `\`edgefl up\` with ${p.nodes} nodes, Dirichlet alpha ${p.alpha}, built-in digits, up to ${p.rounds} rounds (stop at ${p.target}). Rounds to 97 %: ${headline.rounds_to_97 ?? 'not reached'}; to 98 %: ${headline.rounds_to_98 ?? 'not reached'}. Final accuracy ${headline.final_accuracy === null ? '—' : `${(headline.final_accuracy * 100).toFixed(2)} %`}, wall time ${headline.wall_s} s, mean overhead share ${headline.overhead_share ?? '—'} (share of a round not spent training). edgefl up exit code ${code}.`,
          '',
          roundsTable(lines),
          '',
          `In-process model.predict on this machine (for scale): ${ceiling.map((c) => `batch ${c.batch}: ${c.images_per_s} images/s`).join(', ')}.`,
        ].join('\n'),
        charts: [
          {
            file: 'fl-accuracy.svg',
            title: 'Global accuracy per round',
            svg: lineChart({ title: 'Global accuracy per round', xLabel: 'round', yLabel: 'held-out accuracy', series: [{ name: 'global model', points: lines.filter((l) => l.global_accuracy !== null).map((l) => [l.round, l.global_accuracy!]) }] }),
          },
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});

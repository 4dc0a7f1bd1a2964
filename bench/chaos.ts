/**
 * chaos: a whole local federation as real processes (3 trainers, the aggregator, one
 * serving function, embedded PostgreSQL) and faults injected into it, each --iterations
 * times:
 *
 *   trainer-kill9     kill -9 of a trainer mid-training; the round must complete with the
 *                     quorum, nothing partial from that node stored, the node rejoins
 *   postgres-restart  PostgreSQL stopped and started again on the same data directory
 *                     mid-run; every service reconnects and the run completes
 *   aggregator-kill9  kill -9 of the aggregator mid-round; a new process resumes the run
 *   serving-sigterm   SIGTERM to a serving function under load; accepted requests finish
 *   hostile-serving-load  largest legal requests + a fuzz mix + normal predictions for 60 s
 *                     (bench/hostile-serving.ts), once: 0 OOM, 0 5xx, readiness p99, peak RSS
 *
 * data_loss counts anything lost or corrupted: failed runs, missing or duplicated round
 * versions, stored bytes that no longer match their checksum, partial updates, failed
 * in-flight requests. It must be zero. A new fault is one entry in FAULTS.
 *
 *   npm run bench -- chaos [--iterations 2] [--rounds 3] [--samples 150] [--out DIR]
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../services/core/backend.js';
import { Cluster, RestartablePostgres, publishInitialModel } from './lib/chaos-cluster.js';
import { aggregatorKill9, postgresRestart, servingSigterm, trainerKill9 } from './lib/chaos-faults.js';
import { benchmark, int, type BenchContext } from './lib/flags.js';
import { runHostileServing, type HostileOutcome } from './hostile-serving.js';
import { mdTable, type BenchOutput } from './lib/output.js';

export interface FaultResult {
  fault: string;
  injected: number;
  survived: number;
  data_loss: number;
  /** Figures of a fault that measures more than survival (hostile-serving-load). */
  metrics?: Record<string, unknown>;
}

export interface ChaosParams extends Record<string, unknown> {
  iterations: number;
  rounds: number;
  samples: number;
}

interface FaultContext {
  cluster: Cluster;
  pg: RestartablePostgres;
  iteration: number;
  rounds: number;
  log(msg: string): void;
}

interface Outcome {
  survived: boolean;
  dataLoss: number;
  detail: string;
  metrics?: Record<string, unknown>;
}

/** A fault: inject it and judge the outcome; `restore` brings the federation back for the next one. */
export interface Fault {
  name: string;
  inject(ctx: FaultContext): Promise<Outcome>;
  restore?(ctx: FaultContext): Promise<void>;
  /** Injected in the first iteration only (a long measurement rather than a fault to repeat). */
  once?: boolean;
}

export const FAULTS: Fault[] = [
  {
    name: 'trainer-kill9',
    async inject({ cluster, iteration }) {
      const t = await trainerKill9(cluster, iteration);
      const survived = t.roundStatus === 'completed' && !t.participants.includes(t.victim) && t.rejoined && t.problems.length === 0;
      return { survived, dataLoss: t.problems.length, detail: `${t.victim} killed in round 1 (${t.victimStatus}); participants ${t.participants.join(',')}; rejoined in round ${t.rejoinedIn ?? 'never'}` };
    },
  },
  {
    name: 'postgres-restart',
    async inject({ cluster, pg, rounds }) {
      const r = await postgresRestart(cluster, pg, rounds);
      return { survived: r.problems.length === 0, dataLoss: r.problems.length, detail: r.problems.join('; ') || `run ${r.runId} completed` };
    },
    restore: ({ pg }) => pg.start().catch(() => {}),
  },
  {
    name: 'aggregator-kill9',
    async inject({ cluster, rounds }) {
      const a = await aggregatorKill9(cluster, rounds);
      return { survived: a.problems.length === 0, dataLoss: a.problems.length, detail: a.problems.join('; ') || `run ${a.runId} resumed, ${a.roundsCompleted} rounds` };
    },
    restore: async ({ cluster }) => {
      if (!cluster.aggregator.alive) await cluster.aggregator.start().catch(() => {});
    },
  },
  {
    name: 'serving-sigterm',
    async inject({ cluster }) {
      const s = await servingSigterm(cluster.serving!);
      return { survived: s.failed === 0 && s.exitCode === 0, dataLoss: s.failed, detail: `${s.ok}/${s.accepted} in-flight requests answered, exit ${s.exitCode}, new connections refused: ${s.refusedAfter}` };
    },
    restore: async ({ cluster }) => {
      if (!cluster.serving!.alive) await cluster.serving!.start();
    },
  },
  {
    name: 'hostile-serving-load',
    once: true,
    async inject({ cluster, log }) {
      const serving = cluster.serving!;
      const h: HostileOutcome = await runHostileServing({ url: serving.url, pid: serving.child!.pid, alive: () => serving.alive }, { seconds: 60, memory_limit_mib: 256, max_connections: 4, fuzz_connections: 4, normal_connections: 2 }, log);
      return {
        survived: h.oom === 0 && h.server_errors === 0 && h.readiness.p99_ms <= 200,
        dataLoss: h.oom + h.server_errors,
        detail: `peak RSS ${h.peak_rss_mib} of ${h.memory_limit_mib} MiB, readiness p99 ${h.readiness.p99_ms} ms (idle ${h.readiness_idle.p99_ms} ms), ${h.server_errors} 5xx, OOM ${h.oom}`,
        metrics: { oom: h.oom, server_errors: h.server_errors, readiness_p99_ms: h.readiness.p99_ms, readiness_idle_p99_ms: h.readiness_idle.p99_ms, peak_rss_mib: h.peak_rss_mib, memory_limit_mib: h.memory_limit_mib },
      };
    },
    restore: async ({ cluster }) => {
      if (!cluster.serving!.alive) await cluster.serving!.start();
    },
  },
];

/** Injects every fault `iterations` times into one federation; a fault that throws counts as not survived. */
export async function runFaults(p: ChaosParams, dirs: { data: string; logs: string }, log: (m: string) => void): Promise<FaultResult[]> {
  const pg = new RestartablePostgres(path.join(dirs.data, 'pg'));
  const faults = new Map<string, FaultResult>();
  const record = (fault: string, o: Outcome) => {
    const f = faults.get(fault) ?? { fault, injected: 0, survived: 0, data_loss: 0 };
    faults.set(fault, f);
    f.injected++;
    if (o.survived) f.survived++;
    f.data_loss += o.dataLoss;
    if (o.metrics) f.metrics = o.metrics;
    log(`${fault}: ${o.survived ? 'survived' : 'NOT survived'}${o.dataLoss ? `, data loss ${o.dataLoss}` : ''} — ${o.detail}`);
  };
  await pg.start();
  const cluster = new Cluster({ databaseUrl: pg.url, samples: p.samples, logDir: dirs.logs, withServing: true });
  try {
    await cluster.start();
    await publishInitialModel(cluster.pool);
    for (let iteration = 0; iteration < p.iterations; iteration++) {
      for (const fault of FAULTS.filter((f) => iteration === 0 || !f.once)) {
        const ctx = { cluster, pg, iteration, rounds: p.rounds, log };
        const outcome = await fault.inject(ctx).catch((e: Error) => ({ survived: false, dataLoss: 0, detail: e.message }));
        record(fault.name, outcome);
        await fault.restore?.(ctx);
      }
    }
  } finally {
    await cluster.stop().catch(() => {});
    await pg.stop().catch(() => {});
  }
  return [...faults.values()];
}

const CHAOS_FLAGS = {
  iterations: int('times each fault is injected', { min: 1, max: 1000, default: 2 }),
  rounds: int('rounds per federated run', { min: 2, max: 100, default: 3 }),
  samples: int('training samples per node', { min: 1, max: 1_000_000, default: 150 }),
};

export const chaos = benchmark({
  description: 'faults injected into a live federation (trainer kill -9, PostgreSQL restart, aggregator kill -9, SIGTERM to serving under load)',
  flags: CHAOS_FLAGS,
  params: (v): ChaosParams => ({ iterations: v.iterations, rounds: v.rounds, samples: v.samples }),
  async run(p: ChaosParams, ctx: BenchContext): Promise<BenchOutput> {
    const backend = await initBackend(undefined, ctx.log); // for the initial model this process publishes
    // Data (PostgreSQL) in a temporary folder; the services' logs stay in the output folder.
    const data = mkdtempSync(path.join(os.tmpdir(), 'edgefl-chaos-'));
    // As root, PostgreSQL runs as the postgres user, who must be able to enter this folder (mkdtemp makes it 0700).
    chmodSync(data, 0o755);
    const logs = path.join(ctx.outDir, 'logs');
    ctx.log(`data in ${data}, logs in ${logs}`);
    let faults: FaultResult[];
    try {
      faults = await runFaults(p, { data, logs }, ctx.log);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
    const dataLoss = faults.reduce((n, f) => n + f.data_loss, 0);
    const notSurvived = faults.reduce((n, f) => n + f.injected - f.survived, 0);
    return {
      backend: backend.name,
      params: p,
      results: { faults, data_loss: dataLoss, not_survived: notSurvived },
      headline: { data_loss: dataLoss, not_survived: notSurvived },
      targets: [
        { name: 'data loss over all faults', target: '0', measured: dataLoss, unit: 'items', met: dataLoss === 0 },
        { name: 'faults not survived', target: '0', measured: notSurvived, unit: 'faults', met: notSurvived === 0 },
      ],
      report: ['## Faults', '', mdTable(['fault', 'injected', 'survived', 'data_loss'], faults.map((f) => [f.fault, f.injected, f.survived, f.data_loss]))].join('\n'),
      charts: [],
    };
  },
});

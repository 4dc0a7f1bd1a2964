import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { containerLogs, memoryCgroupDir, podman, readMemory, readPeakUsage } from './podman.js';
import { securityFlags, type RoleContainer } from './knative-roles.js';

/**
 * One role's container, started the way the kubelet would start it from the manifests
 * (security context, limits, environment), on the host network with its own PORT. Its
 * memory is sampled from the cgroup for as long as it runs.
 */
export interface RunningContainer {
  name: string;
  url: string;
  memory: MemoryTracker;
  /** Sends SIGTERM and resolves with the exit code once the process has drained and exited. */
  terminate(timeoutMs?: number): Promise<number>;
  logs(): Promise<string>;
  remove(): Promise<void>;
}

export interface StartOptions {
  image: string;
  name: string;
  spec: RoleContainer;
  env: Record<string, string>;
  port: number;
}

export async function startContainer(o: StartOptions): Promise<RunningContainer> {
  // Secrets go in a private env file rather than on podman's command line (visible in ps).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-env-'));
  chmodSync(dir, 0o700);
  const envFile = path.join(dir, 'env');
  writeFileSync(envFile, Object.entries(o.env).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
  try {
    await podman(['run', '-d', '--name', o.name, '--network', 'host', '--env-file', envFile, ...securityFlags(o.spec), o.image, ...o.spec.args]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const memory = new MemoryTracker(await memoryCgroupDir(o.name));
  memory.start();
  return {
    name: o.name,
    url: `http://127.0.0.1:${o.port}`,
    memory,
    async terminate(timeoutMs = 60_000) {
      await podman(['kill', '--signal', 'TERM', o.name]);
      const code = Number(await podman(['wait', o.name], { timeoutMs }));
      memory.stop();
      return code;
    },
    logs: () => containerLogs(o.name),
    async remove() {
      memory.stop();
      await podman(['rm', '-f', '-t', '0', o.name]).catch(() => {});
    },
  };
}

const MiB = 2 ** 20;
const toMiB = (b: number) => Math.round((b / MiB) * 10) / 10;

/** Samples the cgroup's memory every `everyMs`; phases mark what the container was doing. */
export class MemoryTracker {
  private timer: NodeJS.Timeout | undefined;
  private peakRss = 0;
  private marks: Record<string, number> = {};
  private peakUsage = 0;

  constructor(private readonly dir: string, private readonly everyMs = 200) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  /** Records the current RSS under `label` (e.g. "idle" once ready). */
  mark(label: string): void {
    this.sample();
    this.marks[label] = this.lastRss;
  }

  private lastRss = 0;
  private sample(): void {
    try {
      const m = readMemory(this.dir);
      this.lastRss = m.rssBytes;
      this.peakRss = Math.max(this.peakRss, m.rssBytes);
      this.peakUsage = Math.max(this.peakUsage, readPeakUsage(this.dir) ?? m.usageBytes);
    } catch {
      // The cgroup goes away with the container; the samples so far stand.
    }
  }

  report(): { rss_mib: Record<string, number>; peak_rss_mib: number; peak_usage_mib: number } {
    return {
      rss_mib: Object.fromEntries(Object.entries(this.marks).map(([k, v]) => [k, toMiB(v)])),
      peak_rss_mib: toMiB(this.peakRss),
      peak_usage_mib: toMiB(this.peakUsage),
    };
  }
}

/** Polls `url` until it answers `status` (or the container has exited, which is a failure at once). */
export async function waitForStatus(url: string, status: number, timeoutMs: number, alive: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === status) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (!(await alive())) throw new Error(`${url}: the container exited (last answer: ${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs / 1000} s (last answer: ${last})`);
}

export const isRunning = (name: string) => podman(['inspect', '--format', '{{.State.Running}}', name]).then((s) => s === 'true', () => false);

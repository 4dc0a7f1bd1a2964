/**
 * What benchmarks add to the process harness (services/harness/process.ts, which starts,
 * watches and stops every child): a serving function on a free port, and RSS readings.
 */
import { readFileSync } from 'node:fs';
import { freePort } from '../../services/harness/ports.js';
import { edgeflCli, spawnService, type ServiceChild } from '../../services/harness/process.js';
import { detectMemoryLimit, servingNodeOptions } from '../../services/serving/limits.js';

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

export interface ServingChild extends ServiceChild {
  url: string;
}

/**
 * Starts `edgefl serve` against `databaseUrl` on a port chosen up front: cold-start timing
 * starts at spawn, so the benchmark cannot wait for the child to report a port-0 port.
 */
/** The memory limit a serving child will see: EDGEFL_MEMORY_LIMIT_MIB as given to it, else what this machine's cgroup says. */
function servingMemoryMiB(env: Record<string, string>): number {
  return detectMemoryLimit({ ...process.env, ...env }).mib;
}

export async function spawnServing(databaseUrl: string, dataDir: string, extraEnv: Record<string, string> = {}): Promise<ServingChild> {
  const port = await freePort();
  const child = spawnService({
    name: `serving:${port}`,
    args: [edgeflCli(), 'serve'],
    // Started the way the manifests and `edgefl up` start serving: V8's heap sized for its memory limit.
    env: { DATABASE_URL: databaseUrl, PORT: String(port), EDGEFL_LOG_LEVEL: 'info', EDGEFL_DATA_DIR: dataDir, NODE_OPTIONS: servingNodeOptions(servingMemoryMiB(extraEnv)), ...extraEnv },
  });
  return Object.assign(child, { url: `http://127.0.0.1:${port}` });
}

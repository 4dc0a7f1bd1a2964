import { readFileSync } from 'node:fs';
import { ENV } from './config.js';

export interface MemoryLimit {
  mib: number;
  source: typeof ENV.memoryLimitMiB | 'cgroup' | 'default';
}

const CGROUP_FILES = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'];

/** The container's memory limit in MiB (cgroup v2, then v1), or undefined when there is none. */
export function cgroupLimitMiB(read: (file: string) => string = (f) => readFileSync(f, 'utf8')): number | undefined {
  for (const file of CGROUP_FILES) {
    let text: string;
    try {
      text = read(file).trim();
    } catch {
      continue;
    }
    const bytes = /^\d+$/.test(text) ? Number(text) : NaN;
    // "max" (v2) or a page-rounded 2^63 (v1) both mean unlimited: look at the next file.
    if (Number.isFinite(bytes) && bytes > 0 && bytes < 2 ** 50) return Math.floor(bytes / 2 ** 20);
  }
  return undefined;
}

/**
 * The memory a function may use: EDGEFL_MEMORY_LIMIT_MIB, else its cgroup limit, else
 * `fallbackMiB` — the limit its Knative manifest gives it, so a process run without a
 * limit behaves as it would in the cluster.
 */
export function memoryLimit(configured: number | undefined, fallbackMiB: number, cgroup: () => number | undefined = cgroupLimitMiB): MemoryLimit {
  if (configured !== undefined) return { mib: configured, source: ENV.memoryLimitMiB };
  const fromCgroup = cgroup();
  if (fromCgroup !== undefined) return { mib: fromCgroup, source: 'cgroup' };
  return { mib: fallbackMiB, source: 'default' };
}

/**
 * glibc's malloc gives each thread that allocates its own arena (up to 8 per core), and freed
 * memory stays in the arena it came from. A trainer runs its training threads, V8's GC helpers
 * and libuv's pool: with the default, `bench memory` measured its peak during a 2-thread epoch
 * at 265–281 MiB, and 238–246 MiB with two arenas, at the same samples/s (two alternated `bench
 * train` pairs: 1,259/1,281 against 1,270/1,272). One arena measured 233–236 MiB but cost
 * about 5 % of 2-thread training (malloc then contends). Serving gains a few MiB as well.
 * glibc reads it when a process starts, so it is set for the processes edgefl starts
 * (spawnService) and in the image (Dockerfile, checked against this value by a test); a value
 * already in the environment wins. musl and other allocators ignore it.
 */
export const MALLOC_ENV = { MALLOC_ARENA_MAX: '2' } as const;

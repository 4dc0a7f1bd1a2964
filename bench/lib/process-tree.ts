/**
 * Memory and CPU of a whole process tree (a federation under `edgefl up`: the aggregator,
 * PostgreSQL, serving functions and on-demand trainers), summed from /proc: RSS, where shared
 * pages count once per process (an upper bound), PSS, where they are split among their users
 * (what the tree really takes from the machine), and CPU seconds by role.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** pid → parent pid for every process visible in /proc. */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command name (field 2) may hold spaces or parentheses: parse after its closing one.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      out.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** One figure of a process's memory from /proc, in KiB (0 once the process is gone). */
function kib(path: string, field: RegExp): number {
  try {
    return Number(field.exec(readFileSync(path, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0; // gone
  }
}

/** `root` and all its descendants right now. */
function treeOf(root: number): Set<number> {
  const ppid = parents();
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of ppid) if (!tree.has(pid) && tree.has(parent)) (tree.add(pid), (grew = true));
  }
  return tree;
}

export interface TreeMemory {
  /** Sum of VmRSS: pages shared by several processes (the node binary, PostgreSQL's shared buffers) count once per process. */
  rssMib: number;
  /** Sum of Pss (smaps_rollup): each shared page split among its users, so the machine's real share of the tree. */
  pssMib: number;
}

/** RSS and PSS in MiB of these processes right now. */
function memoryOf(pids: Iterable<number>): TreeMemory {
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    rss += kib(`/proc/${pid}/status`, /^VmRSS:\s+(\d+)/m);
    pss += kib(`/proc/${pid}/smaps_rollup`, /^Pss:\s+(\d+)/m);
  }
  return { rssMib: rss / 1024, pssMib: pss / 1024 };
}

export type Role = 'trainer' | 'serving' | 'postgres' | 'aggregator';

/** What a process of the tree is, from its command line; the root (`edgefl up`: aggregator, activator, dashboard) and anything else count as 'aggregator'. */
export function roleOf(cmdline: string): Role {
  if (/postgres/.test(cmdline)) return 'postgres';
  if (/edgefl\.js\0trainer(\0|$)/.test(cmdline)) return 'trainer';
  if (/edgefl\.js\0serve(\0|$)/.test(cmdline)) return 'serving';
  return 'aggregator';
}

/** USER_HZ: /proc counts CPU time in these ticks; 100 on every Linux build Node runs on. */
const CLOCK_TICKS = 100;

/** User + system CPU seconds a process has used so far (its threads included), or undefined once it is gone. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

export interface TreeUsage extends TreeMemory {
  /** CPU seconds each role's processes used while watched (a process that ended between two samples loses at most one interval). */
  cpuSeconds: Record<Role, number>;
}

/** Samples the tree every intervalMs; stop() returns the memory peaks seen (each at its own moment) and the CPU used by role. */
export function watchPeakMemory(root: number, intervalMs = 500): { stop(): TreeUsage } {
  const peak: TreeMemory = { rssMib: 0, pssMib: 0 };
  // pid → [role, its CPU seconds at the latest sample] (from its start: the watch begins as the tree is spawned).
  const cpu = new Map<number, [Role, number]>();
  const sample = () => {
    // One walk of /proc per sample serves both the memory and the CPU figures.
    const tree = treeOf(root);
    const now = memoryOf(tree);
    peak.rssMib = Math.max(peak.rssMib, now.rssMib);
    peak.pssMib = Math.max(peak.pssMib, now.pssMib);
    for (const pid of tree) {
      const used = cpuSeconds(pid);
      if (used === undefined) continue;
      const seen = cpu.get(pid);
      if (seen) seen[1] = used;
      else {
        let cmdline = '';
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
        } catch {
          continue;
        }
        cpu.set(pid, [pid === root ? 'aggregator' : roleOf(cmdline), used]);
      }
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const cpuSeconds: Record<Role, number> = { trainer: 0, serving: 0, postgres: 0, aggregator: 0 };
      for (const [role, used] of cpu.values()) cpuSeconds[role] += used;
      for (const role of Object.keys(cpuSeconds) as Role[]) cpuSeconds[role] = Math.round(cpuSeconds[role] * 10) / 10;
      return { rssMib: Math.round(peak.rssMib), pssMib: Math.round(peak.pssMib), cpuSeconds };
    },
  };
}

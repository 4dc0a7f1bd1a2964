/**
 * Memory of a whole process tree (a federation under `edgefl up`: the aggregator, PostgreSQL,
 * serving functions and on-demand trainers), summed from /proc: RSS, where shared pages count
 * once per process (an upper bound), and PSS, where they are split among their users (what the
 * tree really takes from the machine).
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

/** RSS and PSS in MiB of `root` and all its descendants right now. */
export function treeMemory(root: number): TreeMemory {
  let rss = 0;
  let pss = 0;
  for (const pid of treeOf(root)) {
    rss += kib(`/proc/${pid}/status`, /^VmRSS:\s+(\d+)/m);
    pss += kib(`/proc/${pid}/smaps_rollup`, /^Pss:\s+(\d+)/m);
  }
  return { rssMib: rss / 1024, pssMib: pss / 1024 };
}

/** Samples the tree's memory every intervalMs; stop() returns the peaks seen (each at its own moment). */
export function watchPeakMemory(root: number, intervalMs = 500): { stop(): TreeMemory } {
  const peak: TreeMemory = { rssMib: 0, pssMib: 0 };
  const sample = () => {
    const now = treeMemory(root);
    peak.rssMib = Math.max(peak.rssMib, now.rssMib);
    peak.pssMib = Math.max(peak.pssMib, now.pssMib);
  };
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rssMib: Math.round(peak.rssMib), pssMib: Math.round(peak.pssMib) };
    },
  };
}

/**
 * Memory of a whole process tree (a federation under `edgefl up`: the aggregator, PostgreSQL,
 * serving functions and on-demand trainers), summed from /proc. Shared pages count once per
 * process, so the sum is an upper bound, as a memory budget wants.
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

/** RSS in MiB of `root` and all its descendants right now (0 once it is gone). */
export function treeRssMib(root: number): number {
  const ppid = parents();
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of ppid) if (!tree.has(pid) && tree.has(parent)) (tree.add(pid), (grew = true));
  }
  let kb = 0;
  for (const pid of tree) {
    try {
      kb += Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

/** Samples the tree's RSS every intervalMs; stop() returns the peak seen. */
export function watchPeakRss(root: number, intervalMs = 500): { stop(): number } {
  let peak = 0;
  const sample = () => (peak = Math.max(peak, treeRssMib(root)));
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return Math.round(peak);
    },
  };
}

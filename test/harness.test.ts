import { describe, expect, it } from 'vitest';
import { waitUntil } from '../services/harness/poll.js';
import { childEnv, liveChildren, spawnService } from '../services/harness/process.js';
import { MALLOC_ENV } from '../services/shared/memory.js';

/** A Node script given inline: `node -e CODE`. */
const script = (code: string) => ['-e', code];

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('process harness', () => {
  it('learns the port from the listening log line and waits for readiness over HTTP', async () => {
    const child = spawnService({
      name: 'http',
      args: script(`
        const s = require('node:http').createServer((req, res) => res.end('ok'));
        s.listen(0, '127.0.0.1', () => console.error(JSON.stringify({ msg: 'listening', port: s.address().port })));
        process.on('SIGTERM', () => s.close(() => process.exit(0)));`),
    });
    const port = await child.port(30_000);
    await child.waitReady(`http://127.0.0.1:${port}/`);
    // A line that came before the call is still found.
    expect((await child.waitForLog('listening', 1000)).fields.port).toBe(port);
    expect(await child.stop()).toBe(0);
    expect(child.alive).toBe(false);
  });

  it("starts children with edgefl's malloc arena limit, which the environment or the caller may override", async () => {
    const child = spawnService({ name: 'env', args: script(`console.error(JSON.stringify({ msg: 'env', arenas: process.env.MALLOC_ARENA_MAX ?? null }))`) });
    expect((await child.waitForLog('env', 30_000)).fields.arenas).toBe(process.env.MALLOC_ARENA_MAX ?? MALLOC_ENV.MALLOC_ARENA_MAX);
    expect(childEnv({}, {}).MALLOC_ARENA_MAX).toBe('2');
    expect(childEnv({}, { MALLOC_ARENA_MAX: '8' }).MALLOC_ARENA_MAX).toBe('8');
    expect(childEnv({ MALLOC_ARENA_MAX: '1' }, { MALLOC_ARENA_MAX: '8' }).MALLOC_ARENA_MAX).toBe('1');
  });

  it('fails a readiness wait as soon as the child exits, naming the exit and its last output', async () => {
    const child = spawnService({ name: 'crash', args: script(`console.error('boom: no database'); process.exit(3);`) });
    await expect(child.waitReady('http://127.0.0.1:9/', { timeoutMs: 600_000 })).rejects.toThrow(/crash exited \(3\)[\s\S]*boom: no database/);
    await expect(child.waitForLog('listening', 600_000)).rejects.toThrow(/exited \(3\) before 'listening'/);
  });

  it('stops the whole process group: what the child started goes too', async () => {
    const child = spawnService({
      name: 'parent',
      args: script(`
        const g = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
        console.error(JSON.stringify({ msg: 'grandchild', pid: g.pid }));
        setInterval(() => {}, 1000);`),
    });
    const grandchild = Number((await child.waitForLog('grandchild', 30_000)).fields.pid);
    expect(alive(grandchild)).toBe(true);
    await child.stop();
    await waitUntil('the grandchild to be gone', () => !alive(grandchild), { timeoutMs: 10_000, intervalMs: 20 });
  });

  it('escalates to SIGKILL when SIGTERM is ignored, and forgets stopped children', async () => {
    const before = liveChildren();
    const child = spawnService({ name: 'stubborn', args: script(`process.on('SIGTERM', () => {}); console.error(JSON.stringify({ msg: 'armed' })); setInterval(() => {}, 1000);`) });
    await child.waitForLog('armed', 30_000);
    expect(liveChildren()).toBe(before + 1);
    expect(await child.stop(200)).toBe('SIGKILL');
    expect(liveChildren()).toBe(before);
  });
});

describe('waitUntil', () => {
  it('returns the first truthy value, treating throws as not yet', async () => {
    let calls = 0;
    const v = await waitUntil('the third call', () => {
      calls++;
      if (calls === 1) throw new Error('refused');
      return calls === 3 ? { calls } : undefined;
    }, { intervalMs: 1 });
    expect(v).toEqual({ calls: 3 });
  });

  it('times out naming what it waited for and the last error', async () => {
    await expect(waitUntil('the impossible', () => Promise.reject(new Error('ECONNREFUSED')), { timeoutMs: 50, intervalMs: 5 })).rejects.toThrow(/waiting for the impossible \(last error: ECONNREFUSED\)/);
  });

  it('ends at once with the reason when its signal aborts', async () => {
    const ctl = new AbortController();
    const waiting = waitUntil('never', () => false, { timeoutMs: 600_000, intervalMs: 60_000, signal: ctl.signal });
    ctl.abort(new Error('the process exited'));
    await expect(waiting).rejects.toThrow('the process exited');
  });
});

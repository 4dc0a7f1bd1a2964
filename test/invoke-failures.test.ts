import { afterEach, describe, expect, it } from 'vitest';
import { invokeTrainer } from '../aggregator/invoke.js';
import { serve, type Running } from './helpers/serve.js';

/** A trainer that answers each request with the next status of `script` (the last one repeats). */
async function scripted(script: number[]): Promise<Running & { requests: () => number }> {
  let n = 0;
  const running = await serve((_req, res) => {
    const status = script[Math.min(n++, script.length - 1)]!;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (status === 429) headers['retry-after'] = '0.05';
    res.writeHead(status, headers).end(status === 200 ? JSON.stringify({ updateId: 7, metrics: {} }) : JSON.stringify({ error: { code: 'x', message: `status ${status}` } }));
  });
  return { ...running, requests: () => n };
}

let open: Running[] = [];
afterEach(async () => {
  await Promise.all(open.map((r) => r.close()));
  open = [];
});

const invoke = (url: string, maxFailures?: number) =>
  invokeTrainer({ nodeId: 'node-0', url }, { runId: 'r', round: 1 }, { deadline: new Date(Date.now() + 10_000), backoffMs: 20, maxFailures });

describe('invokeTrainer: retries', () => {
  it('retries a 5xx until the deadline by default (a synchronous round waits for its node)', async () => {
    const t = await scripted([503, 503, 200]);
    open.push(t);
    expect(await invoke(t.url)).toMatchObject({ ok: true, updateId: 7, attempts: 3 });
  });

  it('gives up after maxFailures failed attempts, and a 429 (busy, come back later) is not one of them', async () => {
    const t = await scripted([429, 429, 503, 200]);
    open.push(t);
    const outcome = await invoke(t.url, 1);
    expect(outcome).toMatchObject({ ok: false, reason: 'unreachable', status: 503, attempts: 3 });
    expect(outcome.ok || outcome.detail).toMatch(/gave up after 1 failed attempt/);
    expect(t.requests()).toBe(3);
  });

  it('counts a broken connection as a failure', async () => {
    const t = await serve((req) => req.socket.destroy());
    open.push(t);
    expect(await invoke(t.url, 1)).toMatchObject({ ok: false, reason: 'unreachable', attempts: 1 });
  });
});

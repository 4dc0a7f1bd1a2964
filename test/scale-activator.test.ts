/**
 * The local activator (services/harness/activator.ts + activator-proxy.ts) with in-process
 * HTTP servers standing in for trainer processes: started on demand, requests held until
 * ready, the --max-active cap with its queue, idle reap, cold starts recorded, a process that
 * dies mid-request leaving its node failed and the next request starting it again.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_PENDING, startActivator, type ActivatorServer } from '../services/harness/activator-proxy.js';
import type { Instance } from '../services/harness/activator.js';

/** A controllable stand-in for a trainer: answers `node N got BODY` once `release` is called (or at once). */
class FakeTrainer {
  server!: http.Server;
  held: (() => void)[] = [];
  requests = 0;
  constructor(readonly node: number, readonly holdRequests: boolean) {}

  async start(): Promise<Instance> {
    this.server = http.createServer((req, res) => {
      this.requests++;
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const answer = () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`node ${this.node} got ${body} at ${req.url}`);
        if (this.holdRequests) this.held.push(answer);
        else answer();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const exited = new Promise((r) => this.server.once('close', r));
    return { url: `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`, exited, stop: () => this.kill() };
  }

  /** Ends the "process" at once, whatever it was doing. */
  async kill(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

let activator: ActivatorServer | undefined;
afterEach(async () => {
  await activator?.close();
  activator = undefined;
});

interface Setup {
  refuseWake?: Parameters<typeof startActivator>[0]['refuseWake'];
  nodes?: number;
  maxActive?: number;
  idleMs?: number;
  evictAfterMs?: number;
  hold?: boolean;
  /** Resolves a start only when the test says so. */
  gateStarts?: boolean;
  /** A stopped "process" exits only when the test says so. */
  gateStops?: boolean;
}

async function setup(o: Setup = {}) {
  const started: FakeTrainer[] = [];
  const gates: (() => void)[] = [];
  const stopGates: (() => void)[] = [];
  activator = await startActivator({
    nodes: o.nodes ?? 4,
    maxActive: o.maxActive ?? 2,
    idleMs: o.idleMs ?? 60_000,
    evictAfterMs: o.evictAfterMs ?? 0,
    refuseWake: o.refuseWake,
    async start(node) {
      const t = new FakeTrainer(node, o.hold ?? false);
      started.push(t);
      if (o.gateStarts) await new Promise<void>((r) => gates.push(r));
      const instance = await t.start();
      if (!o.gateStops) return instance;
      return { ...instance, stop: async () => (o.gateStops && (await new Promise<void>((r) => stopGates.push(r))), instance.stop()) };
    },
  });
  const a = activator;
  const post = (node: number, body = 'x', path = '') => fetch(`${a.nodeUrl(node)}${path}`, { method: 'POST', body });
  const state = async () => (await (await fetch(`${a.url}/activator`)).json()) as any;
  return { a, started, gates, stopGates, post, state };
}

describe('activator', () => {
  it('starts a node only when invoked, holds the request until it is ready, and records the cold start', async () => {
    const { started, gates, post, state } = await setup({ gateStarts: true });
    expect(started).toHaveLength(0);
    expect((await state()).counts.cold).toBe(4);
    const answer = post(2, 'round-1', '/readyz?x=1');
    await vi.waitFor(() => expect(started).toHaveLength(1));
    expect(started[0]!.node).toBe(2);
    const s = await state();
    expect(s.nodes[2].state).toBe('starting');
    expect(s.coldStarts).toBe(1);
    gates[0]!();
    const res = await answer;
    expect(res.status).toBe(200);
    // Path and query after /node-2 reach the trainer unchanged; the body was held, not lost.
    expect(await res.text()).toBe('node 2 got round-1 at /readyz?x=1');
    const after = await state();
    expect(after.nodes[2]).toMatchObject({ state: 'idle', coldStarts: 1, invocations: 1 });
    expect(after.recentColdStarts).toEqual([expect.objectContaining({ node: 'node-2', ok: true, ms: expect.any(Number) })]);
    // Warm: a second request reuses the process.
    expect((await post(2)).status).toBe(200);
    expect(started).toHaveLength(1);
    expect(activator!.activator.warmSlots()).toEqual([{ nodeId: 'node-2', served: 2, lastMs: expect.any(Number) }]);
    expect((await state()).coldStarts).toBe(1);
  });

  it('caps running processes at maxActive: a third node waits, then takes an idle one\'s place', async () => {
    const { started, post, state } = await setup({ maxActive: 2, hold: true });
    const first = post(0);
    const second = post(1);
    await vi.waitFor(() => expect(started.map((t) => t.held.length)).toEqual([1, 1]));
    const third = post(3);
    await vi.waitFor(async () => expect((await state()).queued).toBe(1));
    expect(started).toHaveLength(2);
    expect((await state()).active).toBe(2);
    // Node 0 finishes: it goes idle and is evicted for the waiting node 3.
    started[0]!.held.shift()!();
    expect((await first).status).toBe(200);
    await vi.waitFor(() => expect(started).toHaveLength(3));
    await vi.waitFor(() => expect(started[2]!.held).toHaveLength(1));
    const s = await state();
    expect(s.nodes[0].state).toBe('cold');
    expect(s.nodes[3].state).toBe('training');
    expect(s.peakActive).toBe(2);
    started[1]!.held.shift()!();
    started[2]!.held.shift()!();
    expect((await second).status).toBe(200);
    expect((await third).status).toBe(200);
  });

  it('counts a process that is stopping until it has exited: the start that evicted it waits', async () => {
    const opts = { maxActive: 1, gateStops: true };
    const { started, stopGates, post, state } = await setup(opts);
    expect((await post(0)).status).toBe(200);
    const second = post(1);
    // Node 0 is told to stop for node 1, but has not exited: node 1 may not start yet.
    await vi.waitFor(() => expect(stopGates).toHaveLength(1));
    const s = await state();
    expect(s.nodes[0].state).toBe('cold');
    expect(s.active).toBe(1);
    expect(s.queued).toBe(1);
    expect(started).toHaveLength(1);
    opts.gateStops = false; // later stops (the test's own teardown) exit at once
    stopGates[0]!();
    expect((await second).status).toBe(200);
    expect(started.map((t) => t.node)).toEqual([0, 1]);
    expect((await state()).peakActive).toBe(1);
  });

  it('starts one process for concurrent requests to one cold node, and never more than maxActive for many', async () => {
    const { started, gates, post, state } = await setup({ nodes: 8, maxActive: 3, gateStarts: true });
    const same = [post(5), post(5), post(5)];
    await vi.waitFor(() => expect(started).toHaveLength(1));
    const others = [0, 1, 2, 3, 4, 6, 7].map((n) => post(n));
    await vi.waitFor(() => expect(started).toHaveLength(3));
    gates.splice(0).forEach((open) => open());
    // Each finished start makes room for the next queued node; keep opening gates until all ran.
    await vi.waitFor(
      () => {
        gates.splice(0).forEach((open) => open());
        expect(started).toHaveLength(8);
      },
      { timeout: 10_000 },
    );
    gates.splice(0).forEach((open) => open());
    for (const res of await Promise.all([...same, ...others])) expect(res.status).toBe(200);
    const s = await state();
    expect(s.peakActive).toBe(3);
    expect(s.nodes[5]).toMatchObject({ coldStarts: 1, invocations: 3 });
    expect(started.filter((t) => t.node === 5)).toHaveLength(1);
  });

  it('keeps a just-idle process for a quick retry rather than evicting it at once for a waiting node', async () => {
    const { started, post, state } = await setup({ maxActive: 1, hold: true, evictAfterMs: 60_000 });
    const first = post(0);
    await vi.waitFor(() => expect(started[0]?.held).toHaveLength(1));
    const waiting = post(1);
    await vi.waitFor(async () => expect((await state()).queued).toBe(1));
    started[0]!.held.shift()!();
    expect((await first).status).toBe(200);
    const retry = post(0);
    await vi.waitFor(() => expect(started[0]!.held).toHaveLength(1));
    expect(started).toHaveLength(1);
    started[0]!.held.shift()!();
    expect((await retry).status).toBe(200);
    expect((await state()).nodes[0]).toMatchObject({ state: 'idle', coldStarts: 1 });
    await activator!.close();
    await waiting.catch(() => {});
  });

  it('stops a process after the idle window; the next request is a new cold start', async () => {
    const { a, started, post, state } = await setup({ idleMs: 50 });
    expect([...a.activator.warmNodes()]).toEqual([]);
    expect((await post(1)).status).toBe(200);
    expect([...a.activator.warmNodes()]).toEqual(['node-1']); // idle but running: what warm-aware selection prefers
    await vi.waitFor(async () => expect((await state()).nodes[1].state).toBe('cold'));
    expect([...a.activator.warmNodes()]).toEqual([]);
    expect(started[0]!.server.listening).toBe(false);
    expect((await post(1)).status).toBe(200);
    expect(started).toHaveLength(2);
    expect((await state()).nodes[1]).toMatchObject({ coldStarts: 2, failures: 0 });
    expect(a.activator.warmSlots()).toMatchObject([{ nodeId: 'node-1', served: 1 }]); // a new process starts its run afresh
  });

  it('a process killed mid-request leaves its node failed and answers 503; the next request starts it again', async () => {
    const { started, post, state } = await setup({ hold: true });
    const answer = post(0, 'round-3');
    await vi.waitFor(() => expect(started[0]?.held).toHaveLength(1));
    expect((await state()).nodes[0].state).toBe('training');
    await started[0]!.kill();
    const res = await answer;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect((await res.json()).error.code).toBe('trainer_unavailable');
    expect((await state()).nodes[0]).toMatchObject({ state: 'failed', failures: 1 });
    const retry = post(0, 'round-3');
    await vi.waitFor(() => expect(started[1]?.held).toHaveLength(1));
    started[1]!.held.shift()!();
    expect(await (await retry).text()).toBe('node 0 got round-3 at /');
    expect((await state()).nodes[0]).toMatchObject({ state: 'idle', coldStarts: 2 });
  });

  it('a caller that gives up (its deadline) does not cost the node its process', async () => {
    const { started, a, state } = await setup({ hold: true });
    const ac = new AbortController();
    const answer = fetch(a.nodeUrl(1), { method: 'POST', body: 'x', signal: ac.signal }).catch(() => 'aborted');
    await vi.waitFor(() => expect(started[0]?.held).toHaveLength(1));
    ac.abort();
    expect(await answer).toBe('aborted');
    await vi.waitFor(async () => expect((await state()).nodes[1].state).toBe('idle'));
    expect((await state()).nodes[1].failures).toBe(0);
    expect(started[0]!.server.listening).toBe(true);
  });

  it(`holds at most ${MAX_PENDING} requests; more get 503 at once`, async () => {
    const { started, a } = await setup({ maxActive: 1, hold: true });
    const held = Array.from({ length: MAX_PENDING }, (_, i) => fetch(a.nodeUrl(i % 4), { method: 'POST', body: 'x' }));
    await vi.waitFor(() => expect(started[0]?.held.length).toBeGreaterThan(0));
    await vi.waitFor(async () => expect((await fetch(a.nodeUrl(0), { method: 'POST', body: 'x' })).status).toBe(503));
    expect(started).toHaveLength(1);
    await a.close();
    await Promise.allSettled(held);
  });

  it('wakes no node for a request its check refuses (401)', async () => {
    const { started, a, state } = await setup({ refuseWake: (node, req) => (req.headers.authorization === `Bearer ok-${node}` ? undefined : 'token missing') });
    const refused = await fetch(a.nodeUrl(1), { method: 'POST', body: 'x', headers: { authorization: 'Bearer ok-node-2' } });
    expect(refused.status).toBe(401);
    expect((await refused.json()).error.message).toBe('not waking node-1: token missing');
    expect(started).toHaveLength(0);
    expect((await state()).coldStarts).toBe(0);
    expect((await fetch(a.nodeUrl(1), { method: 'POST', body: 'x', headers: { authorization: 'Bearer ok-node-1' } })).status).toBe(200);
  });

  it('refuses unknown nodes (404) and oversized bodies (413) without starting anything', async () => {
    const { started, a, post } = await setup();
    for (const path of ['/node-4', '/node-x', '/nodes-1', '/']) {
      const res = await fetch(a.url + path, { method: 'POST', body: '{}' });
      expect(res.status).toBe(404);
      expect((await res.json()).error.code).toBe('unknown_node');
    }
    const big = await post(1, 'x'.repeat(2 * 1024 * 1024));
    expect(big.status).toBe(413);
    expect(started).toHaveLength(0);
    expect(await (await fetch(`${a.url}/metrics`)).text()).toContain('edgefl_activator_active_trainers');
  });
});

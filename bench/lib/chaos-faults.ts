/**
 * The faults the chaos benchmark injects into a live federation (bench/lib/chaos-cluster.ts),
 * each returning what it observed; bench/chaos.ts judges and records them.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { PIXELS } from '../../services/core/model.js';
import { waitUntil } from '../../services/harness/poll.js';
import * as store from '../../services/store/model-store.js';
import { CHAOS_ADMIN_TOKEN, RUN, type Cluster, type RestartablePostgres, type ServiceProcess } from './chaos-cluster.js';

export interface TrainerKillOutcome {
  runId: string;
  victim: string;
  killedRound: number;
  roundStatus: string;
  participants: string[];
  victimStatus: string | undefined;
  partialStored: boolean;
  rejoined: boolean;
  rejoinedIn?: number;
  problems: string[];
}

/** kill -9 one trainer while it trains; restart it once that round is over. */
export async function trainerKill9(c: Cluster, iteration: number, opts: { roundTimeoutS?: number } = {}): Promise<TrainerKillOutcome> {
  const victim = c.trainers[iteration % c.trainers.length]!;
  const victimId = `node-${c.trainers.indexOf(victim)}`;
  const runId = await c.startRun({ ...RUN, rounds: 12, minQuorum: c.trainers.length - 1, roundTimeoutS: opts.roundTimeoutS ?? 15 });
  await waitUntil(`${victim.name} to be training`, () => c.trainerBusy(victim), { intervalMs: 20 });
  await victim.signal('SIGKILL');
  const r1 = await c.waitRound(runId, 1, ['completed', 'failed'], 120_000);
  const node = r1.metrics.nodes?.find((n: { nodeId: string }) => n.nodeId === victimId);
  const partial = await store.findUpdate(c.pool, runId, 1, victimId);
  await victim.start();
  // The node rejoins as soon as it is back (however long its start took): watch for it, then end the run.
  const rejoinedIn = await waitUntil(`${victimId} to rejoin`, async () => {
    const rounds = await store.listRounds(c.pool, runId);
    return rounds.find((r) => r.round > 1 && r.status === 'completed' && (r.metrics.participants ?? []).includes(victimId))?.round;
  }, { timeoutMs: 180_000, intervalMs: 200 }).catch(() => undefined);
  await fetch(`${c.aggregator.url}/runs/${runId}/stop`, { method: 'POST', headers: { authorization: `Bearer ${CHAOS_ADMIN_TOKEN}` } });
  await c.waitRun(runId);
  const { problems } = await c.audit(runId, ['stopped', 'completed']);
  return {
    runId,
    victim: victimId,
    killedRound: 1,
    roundStatus: r1.status,
    participants: r1.metrics.participants ?? [],
    victimStatus: node?.status,
    partialStored: partial !== undefined,
    rejoined: rejoinedIn !== undefined,
    rejoinedIn,
    problems: partial ? [...problems, `update of killed ${victimId} stored`] : problems,
  };
}

/** kill -9 the aggregator mid-round; a new process on the same database resumes the run. */
export async function aggregatorKill9(c: Cluster, rounds = 3): Promise<{ runId: string; problems: string[]; roundsCompleted: number }> {
  const runId = await c.startRun({ ...RUN, rounds, roundTimeoutS: 60 });
  await c.waitRound(runId, 1, ['completed']);
  await waitUntil('round 2 to start', async () => (await c.round(runId, 2))?.status === 'running', { intervalMs: 20 });
  await c.aggregator.signal('SIGKILL');
  await c.aggregator.start();
  await c.waitRun(runId);
  const { problems } = await c.audit(runId);
  const done = (await store.listRounds(c.pool, runId)).filter((r) => r.status === 'completed').length;
  if (done !== rounds) problems.push(`${done} of ${rounds} rounds completed`);
  return { runId, problems, roundsCompleted: done };
}

/** Stops PostgreSQL mid-round for `downMs`, starts it again; the run must complete. */
export async function postgresRestart(c: Cluster, pgServer: RestartablePostgres, rounds = 3, downMs = 3000): Promise<{ runId: string; problems: string[] }> {
  const runId = await c.startRun({ ...RUN, rounds, roundTimeoutS: 90 });
  await waitUntil('round 1 to train', async () => (await c.round(runId, 1))?.status === 'running' && (await c.trainerBusy(c.trainers[0]!)), { intervalMs: 20 });
  await pgServer.stop();
  await sleep(downMs);
  await pgServer.start();
  await c.waitRun(runId, 300_000);
  const { problems } = await c.audit(runId);
  for (const p of [...c.trainers, c.aggregator, ...(c.serving ? [c.serving] : [])]) if (!p.alive) problems.push(`${p.name} died`);
  return { runId, problems };
}

export interface LoadOutcome {
  accepted: number;
  ok: number;
  errors: string[];
  failed: number;
  refusedAfter: boolean;
  exitCode: number | string | null;
}

function postJson(url: string, body: string, onSent: () => void = () => {}): Promise<{ status: number; connected: boolean; error?: string }> {
  return new Promise((resolve) => {
    let connected = false;
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connected }));
      res.on('error', (e) => resolve({ status: 0, connected, error: e.message }));
    });
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('error', (e) => {
      onSent();
      resolve({ status: 0, connected, error: e.message });
    });
    req.end(body, () => onSent());
  });
}

/**
 * SIGTERM to a serving function while `concurrency` predict requests are in flight. All
 * were sent (and their connections accepted) before the signal; every one must succeed.
 */
export async function servingSigterm(serving: ServiceProcess, concurrency = 24, batch = 32): Promise<LoadOutcome> {
  const body = JSON.stringify({ instances: Array.from({ length: batch }, () => Array(PIXELS).fill(0.5)) });
  const url = `${serving.url}/v1/models/mnist:predict`;
  const conns: Promise<void>[] = [];
  const inflight = Array.from({ length: concurrency }, () => {
    let connected!: () => void;
    conns.push(new Promise<void>((r) => (connected = r)));
    return postJson(url, body, connected);
  });
  // Every request is connected and sent; one more request answered on a later connection
  // proves the server has accepted all of them (the accept queue is FIFO): they are in flight.
  await Promise.all(conns);
  await sleep(100);
  // The fence needs a NEW connection (fetch would reuse a pooled keep-alive one, proving nothing).
  await new Promise<void>((resolve, reject) => {
    http.get(serving.url + '/healthz', { agent: false, timeout: 30_000 }, (res) => res.resume().on('end', () => resolve())).on('error', reject);
  });
  const exit = serving.signal('SIGTERM');
  const results = await Promise.all(inflight);
  // The in-flight requests can all be answered before the signal is even handled: probe for
  // refused connections only once the process is draining.
  await serving.shuttingDown;
  const after = await postJson(url, body);
  const exitCode = await exit;
  const ok = results.filter((r) => r.status === 200).length;
  const errors = results.filter((r) => r.status !== 200).map((r) => r.error ?? `HTTP ${r.status}`);
  return { accepted: results.length, ok, errors, failed: results.length - ok, refusedAfter: after.status === 0, exitCode };
}

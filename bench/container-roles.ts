import http from 'node:http';
import type pg from 'pg';
import type { TrainTestSplit } from '../datasets/types.js';
import { isRunning, waitForStatus, type RunningContainer } from '../services/harness/container-run.js';
import type { RoleContainer } from '../services/harness/knative-roles.js';
import { latestVersion, listRunUpdates } from '../services/store/model-store.js';

/**
 * The checks each role's container must pass, as steps that throw with a reason. They talk
 * to the containers over HTTP only, and to PostgreSQL to see what a round stored.
 */

export type Checks = Record<string, string>;

/** Runs one named check, recording 'ok' or the failure; the role's other checks still run. */
export async function check(checks: Checks, name: string, fn: () => Promise<void>): Promise<boolean> {
  try {
    await fn();
    checks[name] = 'ok';
    return true;
  } catch (e) {
    checks[name] = (e as Error).message;
    return false;
  }
}

async function expectStatus(res: Promise<Response>, status: number, what: string): Promise<any> {
  const r = await res;
  const text = await r.text();
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} (wanted ${status}): ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

/** The liveness, readiness and startup paths the manifests probe, each answering 200. */
export async function probesAnswer(c: RunningContainer, spec: RoleContainer, timeoutMs: number): Promise<void> {
  const paths = [spec.startup, spec.liveness, spec.readiness].filter((p): p is string => Boolean(p));
  if (paths.length === 0) throw new Error(`${spec.source} declares no HTTP probes`);
  for (const p of paths) await waitForStatus(c.url + p, 200, timeoutMs, () => isRunning(c.name));
}

const bearer = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

/** Starts a run on the aggregator; returns its id. */
export async function startRun(aggregatorUrl: string, adminToken: string | undefined, body: object): Promise<string> {
  const created = await expectStatus(
    fetch(`${aggregatorUrl}/runs`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(adminToken) }, body: JSON.stringify(body) }),
    201,
    'POST /runs',
  );
  return String(created.id);
}

export async function waitForRun(aggregatorUrl: string, id: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await expectStatus(fetch(`${aggregatorUrl}/runs/${id}`), 200, `GET /runs/${id}`);
    const status = run.status ?? run.run?.status;
    if (status === 'completed') return;
    if (status === 'failed' || status === 'stopped') throw new Error(`run ${id} ended ${status}: ${run.reason ?? run.run?.reason ?? ''}`);
    if (Date.now() > deadline) throw new Error(`run ${id} still ${status} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** What a round must leave in PostgreSQL: the node's update and a newer global model. */
export async function roundStored(pool: pg.Pool, runId: string, nodeId: string, before: number | undefined): Promise<void> {
  await updateStored(pool, runId, nodeId);
  const after = await latestVersion(pool);
  if (after === undefined || (before !== undefined && after <= before)) throw new Error(`no new global model version after run ${runId} (before ${before}, after ${after})`);
}

export async function updateStored(pool: pg.Pool, runId: string, nodeId: string): Promise<void> {
  const updates = await listRunUpdates(pool, runId);
  if (!updates.some((u) => u.nodeId === nodeId)) throw new Error(`no update from ${nodeId} stored for run ${runId}`);
}

/** `count` held-out digits as TF Serving `instances` (28x28 intensities in [0,1]). */
export function instances(split: TrainTestSplit, count: number): number[][][] {
  const { test } = split;
  return Array.from({ length: count }, (_, k) => {
    const i = k % test.count;
    const img = test.images.subarray(i * 784, (i + 1) * 784);
    return Array.from({ length: 28 }, (_, r) => Array.from(img.subarray(r * 28, (r + 1) * 28)));
  });
}

export const predictHeaders = (apiKey: string | undefined) => ({ 'content-type': 'application/json', ...bearer(apiKey) });

export function predict(url: string, apiKey: string | undefined, body: string): Promise<Response> {
  return fetch(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: predictHeaders(apiKey), body });
}

/** A prediction answers one probability row per image, summing to 1, and a class per image. */
export async function predictionWorks(url: string, apiKey: string | undefined, images: number[][][]): Promise<void> {
  const out = await expectStatus(predict(url, apiKey, JSON.stringify({ instances: images })), 200, 'predict');
  if (out.predictions?.length !== images.length) throw new Error(`predict: ${out.predictions?.length} rows for ${images.length} images`);
  for (const row of out.predictions as number[][]) {
    const sum = row.reduce((a, b) => a + b, 0);
    if (row.length !== 10 || Math.abs(sum - 1) > 1e-3) throw new Error(`predict: a row of ${row.length} probabilities summing to ${sum}`);
  }
  if (apiKey) await expectStatus(predict(url, undefined, JSON.stringify({ instances: images })), 401, 'predict without the API key');
}

/** A response's status, once its body has been read. */
export const statusOf = async (r: Response) => {
  await r.arrayBuffer();
  return r.status;
};

/** One request on `agent` (node:http, so the caller controls which connections carry it); resolves with the status. */
export function request(agent: http.Agent, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method: init.method ?? 'GET', headers: init.headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** `count` requests at once, each of which must answer 2xx. */
export async function concurrent(count: number, send: (i: number) => Promise<number>): Promise<void> {
  const results = await Promise.allSettled(
    Array.from({ length: count }, async (_, i) => {
      const status = await send(i);
      if (status >= 300) throw new Error(`HTTP ${status}`);
    }),
  );
  const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  if (failed.length) throw new Error(`${failed.length}/${count} requests failed: ${[...new Set(failed.map((f) => String(f.reason?.cause?.code ?? f.reason?.message)))].join(', ')}`);
}

/**
 * SIGTERM while `inFlight` requests are being answered: every one of them must succeed and
 * the process must exit 0 (Knative's drain contract). `started` resolves once the server has
 * demonstrably begun work (so the signal really lands mid-flight).
 */
export async function drainsCleanly(c: RunningContainer, inFlight: Promise<void>, started: Promise<unknown>): Promise<void> {
  await started;
  const code = await c.terminate();
  await inFlight;
  if (code !== 0) throw new Error(`exited ${code} after SIGTERM`);
}

/** Resolves once the trainer reports a training in progress (its /readyz says busy). */
export async function trainerBusy(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = (await fetch(`${url}/readyz`).then((x) => x.json())) as { busy?: boolean };
    if (r.busy) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`the trainer did not start training within ${timeoutMs / 1000} s`);
}

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAggregatorApp } from '../aggregator/app.js';
import type { Federation } from '../aggregator/federation.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { PIXELS, referenceModelSpec, specSize } from '../services/core/model.js';
import { freePort } from '../services/harness/ports.js';
import * as store from '../services/store/model-store.js';
import { promotedFor, promotionHistory } from '../services/store/promotion.js';
import type { TrainTestSplit } from '../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { FAST, createFederation, quietLog, serve, shards, startTrainer, testData, waitRunDone, type Running } from './helpers/federation.js';

/**
 * The acceptance checks, on real serving processes (dist/ must be built: npm test
 * builds it first), real in-process trainers and aggregator, and a real PostgreSQL.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const built = existsSync(path.join(ROOT, 'dist/services/cli/edgefl.js'));
const TOKEN = 'promotion-test-token';
const NODES = ['node-0', 'node-1', 'node-2'];

interface ServingProc {
  nodeId: string;
  url: string;
  proc: ChildProcess;
  log: string[];
}

let db: TestDatabase;
let data: TrainTestSplit;
let trainers: Running[] = [];
let federation: Federation;
let admin: Running;
const serving = new Map<string, ServingProc>();

async function startServing(nodeIndex: number): Promise<ServingProc> {
  const port = await freePort();
  const proc = spawn(process.execPath, [path.join(ROOT, 'services/cli/bin.mjs'), 'serve', '--node-id', String(nodeIndex), '--nodes', '3', '--port', String(port)], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: db.url, EDGEFL_LOG_LEVEL: 'info', EDGEFL_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  proc.stdout!.on('data', (c: Buffer) => log.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => log.push(c.toString()));
  const s = { nodeId: `node-${nodeIndex}`, url: `http://127.0.0.1:${port}`, proc, log };
  serving.set(s.nodeId, s);
  await vi.waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`serving exited:\n${log.join('')}`);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    },
    { timeout: 60_000, interval: 200 },
  );
  return s;
}

/** The served version and canary flag from a serving function's Prometheus text (the gauges its ModelHolder sets). */
function servedFromMetrics(text: string): { version: number | null; canary: boolean } {
  const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const version = gauge('edgefl_model_version');
  return { version: version > 0 ? version : null, canary: gauge('edgefl_serving_canary') === 1 };
}

/** What a serving function says it runs (the gauges its ModelHolder sets). */
async function served(nodeId: string): Promise<{ version: number | null; canary: boolean }> {
  return servedFromMetrics(await (await fetch(`${serving.get(nodeId)!.url}/metrics`)).text());
}

/** Accuracy of a serving function on the aggregator's held-out digits, with the version that answered. */
async function accuracyOf(nodeId: string, count = 200): Promise<{ version: number; accuracy: number } | undefined> {
  const instances = Array.from({ length: count }, (_, i) => Array.from(data.test.images.subarray(i * PIXELS, (i + 1) * PIXELS)));
  const res = await fetch(`${serving.get(nodeId)!.url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ instances }) });
  if (res.status !== 200) return undefined;
  const body = (await res.json()) as { classes: number[]; model_version: string };
  return { version: Number(body.model_version), accuracy: body.classes.filter((c, i) => c === data.test.labels[i]).length / count };
}

const adminPost = (route: string, body?: unknown, token: string | null = TOKEN) =>
  fetch(admin.url + route, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) });

async function allServe(version: number, timeout = 2000): Promise<void> {
  await vi.waitFor(async () => {
    for (const n of NODES) expect(await served(n)).toEqual({ version, canary: false });
  }, { timeout, interval: 50 });
}

describe.skipIf(!built)('promotion on a live federation (real serving processes)', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    data = await testData();
    trainers = await Promise.all(shards(data.train, 3, 400).map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
    const targets = trainers.map((t, i) => ({ nodeId: `node-${i}`, url: t.url }));
    federation = await createFederation(db.pool, data.test, () => targets);
    admin = await serve(createAggregatorApp({ pool: db.pool, federation, log: quietLog, adminToken: TOKEN, trainers: async () => targets, servingUrls: () => [] }));
    for (let i = 0; i < 3; i++) await startServing(i);
  }, 180_000);

  afterAll(async () => {
    await federation?.shutdown();
    for (const s of serving.values()) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await Promise.all([...trainers, admin].filter(Boolean).map((r) => r.close()));
    await db?.close();
  });

  let converged: number;

  it('serving is not ready before anything is promoted; a run with the default policy promotes its best round', async () => {
    for (const n of NODES) expect((await fetch(`${serving.get(n)!.url}/v2/health/ready`)).status).toBe(503);
    const run = await federation.startRun(parseRunConfig({ ...FAST, rounds: 3 }));
    await waitRunDone(db.pool, run.id, 180_000);
    const promoted = (await promotedFor(db.pool))!;
    expect(promoted.by).toBe('policy:best');
    expect(promoted.runId).toBe(run.id);
    const rounds = await store.listRounds(db.pool, run.id);
    const best = Math.max(...rounds.map((r) => r.metrics.validationAccuracy));
    expect(rounds.find((r) => r.globalVersion === promoted.version)!.metrics.validationAccuracy).toBe(best);
    // Both figures are reported: validation (decided) and test (no decision looked at it), also over HTTP.
    const view = (await (await fetch(`${admin.url}/runs/${run.id}`)).json()) as { rounds: Record<string, unknown>[] };
    for (const r of view.rounds) {
      expect(r).toMatchObject({ validationAccuracy: expect.any(Number), testAccuracy: expect.any(Number), promoted: expect.any(Boolean) });
      expect(r.globalAccuracy).toBe(r.validationAccuracy);
    }
    expect(view.rounds.filter((r) => r.promoted).map((r) => r.modelVersion)).toContain(promoted.version);
    // the initial (round 0) model was never promoted
    expect((await promotionHistory(db.pool)).some((p) => p.version === run.initialVersion)).toBe(false);
    converged = promoted.version;
    await allServe(converged, 5000);
  }, 240_000);

  for (const [name, config] of [
    ['a fresh run (random initial model)', { init: 'fresh', rounds: 2 }],
    ['a run with learning rate 5.0', { init: 'latest', rounds: 2, learningRate: 5.0 }],
  ] as const) {
    it(`${name} never lowers any serving function's accuracy (polled every 0.5 s)`, async () => {
      const baseline = new Map<string, number>();
      for (const n of NODES) baseline.set(n, (await accuracyOf(n))!.accuracy);
      const run = await federation.startRun(parseRunConfig({ ...FAST, ...config }));
      const samples: { node: string; version: number; accuracy: number }[] = [];
      let running = true;
      let cycles = 0;
      const poller = (async () => {
        // Until the run has ended, and for at least three cycles: a fast run (Node 24 finishes two small
        // rounds between two polls) still gets polls after its last publish, when a wrong promotion would show.
        for (; running || cycles < 3; cycles++) {
          for (const n of NODES) {
            const a = await accuracyOf(n);
            expect(a, `${n} stopped answering`).toBeDefined();
            samples.push({ node: n, ...a! });
          }
          await new Promise((r) => setTimeout(r, 500));
        }
      })();
      await waitRunDone(db.pool, run.id, 180_000);
      running = false;
      await poller;
      const rounds = await store.listRounds(db.pool, run.id);
      expect(rounds.filter((r) => r.status === 'completed')).toHaveLength(2);
      expect(samples.length).toBeGreaterThan(NODES.length * 2);
      for (const s of samples) expect(s.accuracy, `${s.node} on v${s.version}`).toBeGreaterThanOrEqual(baseline.get(s.node)!);
      // This run's models were worse on validation: none was promoted; its newest model is not served.
      expect((await promotedFor(db.pool))!.version).toBe(converged);
      expect(samples.every((s) => s.version === converged)).toBe(true);
    }, 240_000);
  }

  it('init "promoted" starts a run from the fleet\'s promoted version, not the newest (worse) candidate', async () => {
    const promoted = (await promotedFor(db.pool))!.version;
    // The learning-rate-5.0 run above published newer, worse models: "latest" would start from one of them.
    expect(await store.latestVersion(db.pool)).toBeGreaterThan(promoted);
    const run = await federation.startRun(parseRunConfig({ ...FAST, init: 'promoted', rounds: 1 }));
    expect(run.initialVersion).toBe(promoted);
    await federation.abort(run.id);
    await waitRunDone(db.pool, run.id, 60_000);
  }, 90_000);

  it('the admin API refuses a missing token, an unknown version, a corrupt version and an unknown node with clear codes', async () => {
    const err = async (res: Response) => [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    expect(await err(await adminPost(`/models/${converged}/promote`, {}, null))).toEqual([401, 'unauthorized']);
    expect(await err(await adminPost(`/models/${converged}/promote`, {}, 'wrong'))).toEqual([401, 'unauthorized']);
    expect(await err(await adminPost('/models/999999/promote', {}))).toEqual([404, 'model_not_found']);
    expect(await err(await adminPost('/models/abc/promote', {}))).toEqual([400, 'invalid_version']);
    const flat = new Float32Array(specSize(referenceModelSpec())).fill(0.01);
    const bytes = encodeWeights(referenceModelSpec(), flat);
    const corrupt = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(Buffer.from('not these bytes')), manifest: { tensors: referenceModelSpec() } });
    expect(await err(await adminPost(`/models/${corrupt}/promote`, {}))).toEqual([422, 'model_corrupt']);
    expect(await err(await adminPost(`/models/${converged}/promote`, { nodes: ['node-9'] }))).toEqual([422, 'unknown_nodes']);
    expect(await err(await adminPost(`/models/${converged}/promote`, { nodes: 'node-1' }))).toEqual([400, 'invalid_field']);
    expect(await err(await adminPost(`/models/${converged}/promote`, { force: true }))).toEqual([400, 'unknown_field']);
    expect((await promotedFor(db.pool))!.version).toBe(converged);
  });

  let earlier: number;

  it('a manual rollback reaches every serving function within 2 s', async () => {
    const history = await promotionHistory(db.pool);
    earlier = history.find((p) => p.version !== converged)?.version ?? (await promotedFor(db.pool))!.version;
    expect(earlier).not.toBe(converged);
    const res = await adminPost('/models/rollback', {});
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ version: earlier, nodes: null, by: 'admin' });
    await allServe(earlier, 2000);
  });

  it('a canary promotion changes only the named node; a fleet promotion then changes the rest', async () => {
    const res = await adminPost(`/models/${converged}/promote`, { nodes: ['node-1'] });
    expect(res.status).toBe(201);
    await vi.waitFor(async () => expect(await served('node-1')).toEqual({ version: converged, canary: true }), { timeout: 2000, interval: 50 });
    expect(await served('node-0')).toEqual({ version: earlier, canary: false });
    expect(await served('node-2')).toEqual({ version: earlier, canary: false });
    // The aggregator's view: what is promoted per node, and what each serving function reported it serves.
    await vi.waitFor(async () => {
      const view = (await (await fetch(`${admin.url}/models/promoted`)).json()) as { nodes: { nodeId: string; version: number; canary: boolean; served: { version: number; canary: boolean } }[] };
      expect(view.nodes.map((n) => [n.nodeId, n.version, n.canary, n.served.version, n.served.canary])).toEqual([
        ['node-0', earlier, false, earlier, false],
        ['node-1', converged, true, converged, true],
        ['node-2', earlier, false, earlier, false],
      ]);
    }, { timeout: 2000, interval: 50 });
    expect((await adminPost(`/models/${converged}/promote`, {})).status).toBe(201);
    await allServe(converged, 2000);
    // A fleet rollback follows the fleet's history: a canary since then is neither "current" nor a target.
    expect((await adminPost(`/models/${earlier}/promote`, { nodes: ['node-0'] })).status).toBe(201);
    expect(await (await adminPost('/models/rollback', {})).json()).toMatchObject({ version: earlier, nodes: null });
    await allServe(earlier, 2000);
    expect((await adminPost(`/models/${converged}/promote`, {})).status).toBe(201);
    await allServe(converged, 2000);
  });

  it('a restarted serving function comes back with the promoted version, not the newest', async () => {
    const newest = (await store.latestVersion(db.pool))!;
    expect(newest).not.toBe(converged);
    const old = serving.get('node-2')!;
    old.proc.kill('SIGTERM');
    await new Promise((r) => old.proc.once('exit', r));
    await startServing(2);
    await vi.waitFor(async () => expect(await served('node-2')).toEqual({ version: converged, canary: false }), { timeout: 30_000, interval: 100 });
    expect((await accuracyOf('node-2'))!.version).toBe(converged);
  }, 90_000);

  it('edgefl models: list, promoted, prune --dry-run (nothing promoted is ever on the prune list)', async () => {
    // Asynchronous: the aggregator answering the CLI runs in this process.
    const cli = (args: string[], token = TOKEN) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, [path.join(ROOT, 'services/cli/bin.mjs'), 'models', ...args, '--aggregator', admin.url], { env: { ...process.env, EDGEFL_ADMIN_TOKEN: token } });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        p.on('close', (status) => resolve({ status, stdout, stderr }));
      });
    const list = await cli(['list']);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^\\s+${converged}\\s+promoted\\s`, 'm'));
    const promoted = await cli(['promoted']);
    expect(promoted.stdout).toContain(`promoted to the fleet: v${converged} (fleet) by admin`);
    expect(promoted.stdout).toMatch(new RegExp(`^  node-1: v${converged}; serving v${converged}, held-out \\d+\\.\\d\\d%$`, "m"));
    const prune = await cli(['prune', '--dry-run', '--keep-candidates', '1', '--keep-rollback-targets', '1']);
    expect(prune.status).toBe(0);
    expect(prune.stdout).toMatch(/^would prune the weights of [1-9]\d* candidate version\(s\)/m);
    expect(prune.stdout).toContain(`v${converged}: promoted`);
    expect(prune.stdout.split('\n')[0]).not.toMatch(new RegExp(`v${converged}(,|$)`));
    const noToken = await cli(['promote', String(converged)], '');
    expect(noToken.status).toBe(1);
    expect(noToken.stderr).toContain('401 unauthorized');
  });

  it('pruning for real keeps every protected version loadable; a pruned one answers 410 and cannot be promoted', async () => {
    const res = await adminPost('/models/prune', { keepCandidates: 1, keepRollbackTargets: 1 });
    const plan = (await res.json()) as { prunedVersions: number[]; kept: { version: number; why: string[] }[] };
    expect(plan.prunedVersions.length).toBeGreaterThan(0);
    expect(plan.prunedVersions).not.toContain(converged);
    for (const k of plan.kept) expect((await fetch(`${admin.url}/models/${k.version}?format=bin`)).status).toBe(200);
    const gone = plan.prunedVersions[0]!;
    const bin = await fetch(`${admin.url}/models/${gone}?format=bin`);
    expect([bin.status, ((await bin.json()) as { error: { code: string } }).error.code]).toEqual([410, 'model_pruned']);
    expect((await adminPost(`/models/${gone}/promote`, {})).status).toBe(409);
    for (const n of NODES) expect(await served(n)).toEqual({ version: converged, canary: false });
  });
});

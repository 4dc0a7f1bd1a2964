import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAggregatorApp } from '../aggregator/app.js';
import type { Federation, RoundSummary } from '../aggregator/federation.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import type { TrainerTarget } from '../aggregator/invoke.js';
import { decodeWeights, sha256Hex } from '../services/core/codec.js';
import { referenceModelSpec } from '../services/core/model.js';
import { freePort } from '../services/harness/ports.js';
import * as store from '../services/store/model-store.js';
import type { TrainTestSplit } from '../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import {
  FAST,
  createFederation,
  hangingTrainer,
  quietLog,
  serve,
  shards,
  startTrainer,
  statusTrainer,
  targetsOf,
  testData,
  waitFor,
  waitRunDone,
  type Running,
} from './helpers/federation.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

let db: TestDatabase;
let data: TrainTestSplit;
let real: Running[] = [];
let hang: Running;
let err500: Running;
let err400: Running;
let federation: Federation;
let targets: TrainerTarget[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  data = await testData();
  const parts = shards(data.train, 3, 150);
  real = await Promise.all(parts.map((s, i) => startTrainer(db.pool, `node-${i}`, s)));
  [hang, err500, err400] = await Promise.all([hangingTrainer(), statusTrainer(500), statusTrainer(400)]);
  targets = targetsOf({ ...Object.fromEntries(real.map((r, i) => [`node-${i}`, r])), hang, err500, err400 });
  federation = await createFederation(db.pool, data.test, () => targets);
});

afterAll(async () => {
  await federation?.shutdown();
  await Promise.all([...real, hang, err500, err400].filter(Boolean).map((r) => r.close()));
  await db?.close();
});

describe('Federation against real trainers', () => {
  it('completes rounds, publishes versions with parent links and per-node metrics', async () => {
    const rounds: RoundSummary[] = [];
    const onRound = (s: RoundSummary) => rounds.push(s);
    federation.on('round', onRound);
    const run = await federation.startRun(parseRunConfig({ ...FAST, rounds: 2, nodes: ['node-0', 'node-1', 'node-2'] }));
    const done = await waitRunDone(db.pool, run.id);
    federation.off('round', onRound);
    expect(done.status).toBe('completed');
    expect(done.stopReason).toMatch(/maximum of 2 rounds/);

    const rows = await store.listRounds(db.pool, run.id);
    expect(rows.map((r) => [r.round, r.status])).toEqual([[1, 'completed'], [2, 'completed']]);
    // version chain: initial → round 1 → round 2
    const v1 = (await store.getModelMeta(db.pool, rows[0]!.globalVersion!))!;
    const v2 = (await store.getModelMeta(db.pool, rows[1]!.globalVersion!))!;
    expect(v1.parentVersion).toBe(run.initialVersion);
    expect(rows[0]!.baseVersion).toBe(run.initialVersion);
    expect(v2.parentVersion).toBe(v1.version);
    expect(rows[1]!.baseVersion).toBe(v1.version);
    expect([v1.round, v2.round, v1.runId]).toEqual([1, 2, run.id]);
    expect(done.latestVersion).toBe(v2.version);
    for (const r of rows) {
      expect(r.metrics.globalAccuracy).toBeGreaterThan(0);
      expect(r.metrics.globalAccuracy).toBeLessThanOrEqual(1);
      expect(r.metrics.participants).toEqual(['node-0', 'node-1', 'node-2']);
      expect(r.metrics.nodes).toHaveLength(3);
      for (const n of r.metrics.nodes) {
        expect(n).toMatchObject({ status: 'ok', samples: 150 });
        expect(n.accuracy).toBeGreaterThanOrEqual(0);
        expect(n.updateNorm).toBeGreaterThan(0);
      }
    }
    expect(rounds.map((s) => s.round)).toEqual([1, 2]);
    expect(rounds[1]!.modelVersion).toBe(v2.version);
    // one update per node per round
    expect(await store.listRunUpdates(db.pool, run.id)).toHaveLength(6);
  });

  it('completes a round with the quorum when some nodes hang, fail or refuse; records them', async () => {
    const run = await federation.startRun(parseRunConfig({ ...FAST, rounds: 1, roundTimeoutS: 6, minQuorum: 2, nodes: ['node-0', 'node-1', 'hang', 'err500', 'err400'] }));
    const done = await waitRunDone(db.pool, run.id);
    expect(done.status).toBe('completed');
    const [round] = await store.listRounds(db.pool, run.id);
    expect(round!.status).toBe('completed');
    // It waited for the stragglers until the deadline (the aggregator's own clock, both stamps), and
    // then stopped waiting: the hanging node never answers, so completing at all proves it gave up.
    expect(Date.parse(round!.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(round!.deadline));
    const byNode = Object.fromEntries(round!.metrics.nodes.map((n: { nodeId: string }) => [n.nodeId, n]));
    expect(round!.metrics.participants).toEqual(['node-0', 'node-1']);
    expect(byNode.hang.status).toBe('late');
    expect(byNode.err500.status).toBe('late');
    expect(byNode.err500.reason).toMatch(/HTTP 500/);
    expect(byNode.err500.attempts).toBeGreaterThan(1);
    expect(byNode.err400).toMatchObject({ status: 'failed', attempts: 1 });
    expect(byNode.err400.reason).toMatch(/HTTP 400/);
    expect(new Set(round!.metrics.stragglers)).toEqual(new Set(['hang', 'err500', 'err400']));
  });

  it('fails a round without the quorum, retries it, then fails the run after maxRoundAttempts', async () => {
    const run = await federation.startRun(parseRunConfig({ ...FAST, rounds: 3, roundTimeoutS: 5, minQuorum: 2, maxRoundAttempts: 2, nodes: ['node-0', 'hang', 'err400'] }));
    const done = await waitRunDone(db.pool, run.id);
    expect(done.status).toBe('failed');
    expect(done.stopReason).toMatch(/round 1 failed 2 times/);
    const rows = await store.listRounds(db.pool, run.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'failed', attempt: 2, globalVersion: null });
    expect(rows[0]!.metrics.reason).toMatch(/only 1 of 3 nodes delivered; quorum is 2/);
    const byNode = Object.fromEntries(rows[0]!.metrics.nodes.map((n: { nodeId: string }) => [n.nodeId, n]));
    expect(byNode['node-0'].status).toBe('ok');
    expect(byNode.hang.status).toBe('late');
    expect(byNode.err400.status).toBe('failed');
    // nothing was published for the failed run beyond its initial model
    const published = await db.pool.query('SELECT count(*)::int AS n FROM model_versions WHERE run_id = $1', [run.id]);
    expect(published.rows[0].n).toBe(1);
  });
  // Stop and abort: test/run-lifecycle.test.ts
});

describe('aggregator HTTP API', () => {
  const ADMIN = 'test-admin-token';
  let api: Running;
  const call = (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(api.url + p, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const admin = { authorization: `Bearer ${ADMIN}` };

  beforeAll(async () => {
    const app = createAggregatorApp({ pool: db.pool, federation, log: quietLog, adminToken: ADMIN, trainers: async () => targets, servingUrls: () => [], maxRoundTimeoutS: 600 });
    api = await serve(app);
  });
  afterAll(async () => api?.close());

  it('requires the admin token for POST /runs and stop', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: ADMIN }]) {
      const res = await call('POST', '/runs', { rounds: 1 }, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/Bearer/);
      expect((await res.json()).error.code).toBe('unauthorized');
    }
    expect((await call('POST', '/runs/whatever/stop', undefined, {})).status).toBe(401);
    expect((await call('POST', '/runs/whatever/abort', undefined, {})).status).toBe(401);
  });

  it('answers invalid run configs with 4xx {error:{code,message}}', async () => {
    const cases: [unknown, number, string][] = [
      [{ rounds: 0 }, 400, 'invalid_field'],
      [{ rounds: 'ten' }, 400, 'invalid_field'],
      [{ targetAccuracy: 1.5 }, 400, 'invalid_field'],
      [{ strategy: 'krum' }, 400, 'invalid_field'],
      [{ bogus: 1 }, 400, 'unknown_field'],
      [[1, 2], 400, 'invalid_body'],
      ['{"rounds": 3', 400, 'invalid_json'],
      [{ nodes: ['node-9'] }, 422, 'unknown_nodes'],
      [{ nodes: ['node-0'], minQuorum: 2 }, 422, 'quorum_unreachable'],
      [{ maxUpdateNorm: -1 }, 400, 'invalid_field'],
      // a robust strategy with fewer updates than it needs to outvote one bad node
      [{ strategy: 'median', minQuorum: 2 }, 400, 'invalid_field'],
      [{ strategy: 'trimmed-mean', trimFraction: 0 }, 400, 'invalid_field'],
      [{ strategy: 'median', nodes: ['node-0', 'node-1'] }, 422, 'quorum_unreachable'],
      [{ strategy: 'median', fraction: 0.3 }, 422, 'quorum_unreachable'],
      // longer than the trainers' request may last (EDGEFL_MAX_ROUND_TIMEOUT_S; in the cluster their Knative timeout)
      [{ roundTimeoutS: 601 }, 422, 'round_timeout_too_long'],
    ];
    for (const [body, status, code] of cases) {
      const res = await call('POST', '/runs', body, admin);
      expect(res.status, JSON.stringify(body)).toBe(status);
      const out = await res.json();
      expect(out.error.code, JSON.stringify(body)).toBe(code);
      expect(typeof out.error.message).toBe('string');
    }
    expect((await call('GET', '/runs/nope')).status).toBe(404);
    expect((await call('POST', '/runs/nope/stop', undefined, admin)).status).toBe(404);
    expect((await call('POST', '/runs/nope/abort', undefined, admin)).status).toBe(404);
    expect((await call('GET', '/models/abc')).status).toBe(400);
    expect((await call('GET', '/models/99999')).status).toBe(404);
    expect((await call('GET', '/models/1?format=xml')).status).toBe(400);
  });

  it('starts a run, shows it, and serves its models as codec bytes', async () => {
    const res = await call('POST', '/runs', { ...FAST, rounds: 1, nodes: ['node-0', 'node-1'] }, admin);
    expect(res.status).toBe(201);
    const created = await res.json();
    expect(res.headers.get('location')).toBe(`/runs/${created.id}`);
    expect(created).toMatchObject({ status: 'running', currentRound: expect.any(Number) });
    await waitRunDone(db.pool, created.id);
    const view = await (await call('GET', `/runs/${created.id}`)).json();
    expect(view).toMatchObject({ id: created.id, status: 'completed', config: { rounds: 1, nodes: ['node-0', 'node-1'] } });
    expect(view.rounds).toHaveLength(1);
    expect(view.rounds[0]).toMatchObject({ round: 1, status: 'completed', attempt: 1, selected: ['node-0', 'node-1'], participants: ['node-0', 'node-1'] });
    expect(view.rounds[0].globalAccuracy).toBeGreaterThan(0);
    expect(view.rounds[0].nodes).toHaveLength(2);
    expect(view.rounds[0].modelVersion).toBe(view.latestVersion);
    expect((await call('POST', `/runs/${created.id}/stop`, undefined, admin)).status).toBe(409);
    expect((await call('POST', `/runs/${created.id}/abort`, undefined, admin)).status).toBe(409);
    const list = await (await call('GET', '/runs')).json();
    expect(list.runs.some((r: { id: string }) => r.id === created.id)).toBe(true);

    const models = (await (await call('GET', '/models')).json()).models as { version: number; checksum: string; parentVersion: number | null }[];
    const latest = models.find((m) => m.version === view.latestVersion)!;
    expect(latest.parentVersion).toBe(view.rounds[0].baseVersion);
    const meta = await (await call('GET', `/models/${latest.version}`)).json();
    expect(meta).toMatchObject({ version: latest.version, checksum: latest.checksum });
    const bin = await call('GET', `/models/${latest.version}?format=bin`);
    expect(bin.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = Buffer.from(await bin.arrayBuffer());
    expect(sha256Hex(bytes)).toBe(latest.checksum);
    expect(bin.headers.get('x-checksum-sha256')).toBe(latest.checksum);
    expect(decodeWeights(bytes, referenceModelSpec()).flat.length).toBe(317_066);
  });
});

describe('resume after the aggregator is killed', () => {
  const bin = path.join(ROOT, 'services/cli/bin.mjs');
  const built = existsSync(path.join(ROOT, 'dist/aggregator/main.js'));

  function spawnAggregator(port: number): ChildProcess {
    const proc = spawn(process.execPath, [bin, 'aggregator'], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        PORT: String(port),
        EDGEFL_TRAINER_URLS: real.map((r) => r.url).join(','),
        EDGEFL_TEST_SIZE: '300',
        EDGEFL_LOG_LEVEL: 'error',
        EDGEFL_ADMIN_TOKEN: '',
        EDGEFL_INSECURE: '1', // the in-process trainers of this file run without a secret
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return proc;
  }
  async function healthy(port: number) {
    await waitFor('aggregator to listen', async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok, 60_000, 200);
  }

  it.skipIf(!built)('a new process continues the run: rounds continue, no duplicate versions, it completes', async () => {
    const port = await freePort();
    const first = spawnAggregator(port);
    let second: ChildProcess | undefined;
    try {
      await healthy(port);
      const res = await fetch(`http://127.0.0.1:${port}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...FAST, rounds: 3 }) });
      expect(res.status).toBe(201);
      const { id } = await res.json();
      await waitFor('round 1 to complete', async () => (await store.getRound(db.pool, id, 1))?.status === 'completed', 60_000, 50);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const mid = await store.getRun(db.pool, id);
      expect(mid!.status).toBe('running');

      const port2 = await freePort();
      second = spawnAggregator(port2);
      const done = await waitRunDone(db.pool, id, 90_000);
      expect(done.status).toBe('completed');
      const rows = await store.listRounds(db.pool, id);
      expect(rows.map((r) => [r.round, r.status])).toEqual([[1, 'completed'], [2, 'completed'], [3, 'completed']]);
      const dupes = await db.pool.query('SELECT run_id, round, count(*) FROM model_versions GROUP BY 1,2 HAVING count(*) > 1');
      expect(dupes.rows).toEqual([]);
      const versions = await db.pool.query('SELECT version, parent_version, round FROM model_versions WHERE run_id = $1 ORDER BY round', [id]);
      expect(versions.rows.map((r) => r.round)).toEqual([0, 1, 2, 3]);
      for (let i = 1; i < versions.rows.length; i++) expect(Number(versions.rows[i].parent_version)).toBe(Number(versions.rows[i - 1].version));
      // one update per node and round: the re-entered round reused what the trainers had stored
      const updates = await store.listRunUpdates(db.pool, id);
      expect(updates).toHaveLength(9);
    } finally {
      if (first.exitCode === null && first.signalCode === null) first.kill('SIGKILL');
      if (second && second.exitCode === null) {
        second.kill('SIGTERM');
        await new Promise((r) => second!.once('exit', r));
      }
    }
  });
});

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { initBackend } from '../services/core/backend.js';
import { decodeWeights, encodeWeights, sha256Hex } from '../services/core/codec.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import { freePort } from '../services/harness/ports.js';
import { spawnService, type ServiceChild } from '../services/harness/process.js';
import * as store from '../services/store/model-store.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { publishPromoted } from './helpers/promote.js';

const root = path.resolve(import.meta.dirname, '..');
const built = path.join(root, 'dist/services/cli/edgefl.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** `npm run build`, unless dist/ is already newer than every source file it is built from. */
function buildIfStale() {
  const sources = Math.max(...['services', 'datasets', 'aggregator', 'bench'].map((d) => newestSource(path.join(root, d))), statSync(path.join(root, 'tsconfig.json')).mtimeMs);
  if (existsSync(built) && statSync(built).mtimeMs > sources) return;
  const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8' });
  expect(tsc.stdout + tsc.stderr).toBe('');
  expect(tsc.status).toBe(0);
}

const services: ServiceChild[] = [];
let db: TestDatabase;

type Service = ServiceChild & { url: string; log: string[] };

/** `edgefl <args> --port P` through the process harness; `log` keeps all it writes (stdout and stderr). */
async function start(args: string[], env: Record<string, string>): Promise<Service> {
  const port = await freePort();
  const child = spawnService({ name: args[0]!, args: [path.join(root, 'services/cli/bin.mjs'), ...args, '--port', String(port)], cwd: root, env: { DATABASE_URL: db.url, EDGEFL_LOG_LEVEL: 'info', ...env }, stdout: 'pipe' });
  const log: string[] = [];
  for (const stream of [child.proc.stdout!, child.proc.stderr!]) stream.on('data', (c: Buffer | string) => log.push(String(c)));
  services.push(child);
  return Object.assign(child, { url: `http://127.0.0.1:${port}`, log });
}

/** GET pathName until `ok` holds; fails at once if the process exits. */
async function waitFor(service: Service, pathName: string, ok: (res: Response) => boolean | Promise<boolean>, timeout = 60_000): Promise<Response> {
  return vi.waitFor(
    async () => {
      if (!service.alive) throw new Error(`process exited (${service.proc.exitCode}) before ${pathName} was ready: ${service.describe()}`);
      const res = await fetch(service.url + pathName);
      if (!(await ok(res.clone()))) throw new Error(`${pathName} not ready yet: ${res.status}`);
      return res;
    },
    { timeout, interval: 100 },
  );
}

beforeAll(async () => {
  buildIfStale();
  await initBackend('cpu');
  db = await createTestDatabase();
}, 180_000);

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop(0, 'SIGKILL')));
  await db?.close();
});

describe('edgefl CLI: trainer and serving processes', () => {
  let serving: Service;
  let trainer: Service;
  let v1: number;

  it('start, answer /healthz and /readyz (serving is not ready without a model)', async () => {
    serving = await start(['serve'], {});
    // --insecure: this test invokes the trainer with curl-like plain JSON, no token.
    trainer = await start(['trainer', '--node-id', '0', '--nodes', '3', '--insecure'], { EDGEFL_MAX_TRAIN_SAMPLES: '200' });
    await waitFor(serving, '/healthz', (r) => r.status === 200);
    await waitFor(trainer, '/healthz', (r) => r.status === 200);
    const notReady = await fetch(`${serving.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ ready: false });
    const ready = await fetch(`${trainer.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', node: 'node-0', busy: false, samples: 200 });
    // The opt-out is visible: a warning at start and the flag on GET /.
    expect(trainer.log.join('')).toMatch(/"level":"warn".*INSECURE: authentication is off/);
    expect(await (await fetch(`${trainer.url}/`)).json()).toMatchObject({ insecure: true });
    // The trainer registered its node.
    const nodes = await store.listNodes(db.pool);
    expect(nodes.map((n) => n.id)).toEqual(['node-0']);
    expect(nodes[0]!.shardSize).toBe(200);
  });

  it('serving loads the first version promoted after it started', async () => {
    const model = buildModel(1);
    const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(model));
    model.dispose();
    v1 = await publishPromoted(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
    const res = await waitFor(serving, '/readyz', (r) => r.status === 200, 30_000);
    expect(await res.json()).toEqual({ ready: true, model_version: String(v1) });
  });

  it('the trainer trains one round from plain JSON and stores its update', async () => {
    const res = await fetch(`${trainer.url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ runId: 'cli-run', round: 1, modelVersion: v1, epochs: 1, batchSize: 32, learningRate: 0.001 }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('ce-type')).toBe('dev.edgefl.update.ready');
    const body = (await res.json()) as { updateId: number; sampleCount: number; nodeId: string; checksum: string };
    expect(body).toMatchObject({ nodeId: 'node-0', sampleCount: 200 });
    const updates = await store.listUpdates(db.pool, 'cli-run', 1);
    expect(updates.map((u) => u.id)).toEqual([body.updateId]);
    expect(updates[0]!.checksum).toBe(body.checksum);
  });

  it('serving picks up a newer promoted version (the trained update, published as a global model)', async () => {
    const [update] = await store.listUpdates(db.pool, 'cli-run', 1);
    const bytes = (await store.getUpdateBytes(db.pool, update!.id))!;
    expect(decodeWeights(bytes, referenceModelSpec()).flat.length).toBeGreaterThan(0);
    const v2 = await publishPromoted(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() }, parentVersion: v1, runId: 'cli-run', round: 1 });
    await waitFor(serving, '/v1/models/mnist', async (r) => r.status === 200 && ((await r.json()) as any).model_version_status[0].version === String(v2), 30_000);
    const predict = await fetch(`${serving.url}/v1/models/mnist:predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances: [new Array(784).fill(0)] }),
    });
    expect(predict.status).toBe(200);
    expect(predict.headers.get('x-model-version')).toBe(String(v2));
  });

  it('both exit 0 on SIGTERM', async () => {
    const codes = await Promise.all([serving.stop(), trainer.stop()]);
    const logs = () => serving.log.concat(trainer.log).join('');
    expect(codes, logs().slice(-4000)).toEqual([0, 0]);
    // The last lines can arrive just after the exit.
    await vi.waitFor(() => expect(logs()).toContain('"msg":"shutting down"'));
    expect(logs()).not.toContain('"level":"error"');
  });
});

describe('edgefl CLI: authentication fails closed', () => {
  const exitOf = async (s: Service) => ({ code: await s.exited, out: s.log.join('') });
  const placeholder = 'CHANGE-ME-invoke-secret';
  const good = 'cli-test-secret-0123456789';

  it('a trainer or aggregator without its secret (external database) refuses to start, naming the variable and the opt-out', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['trainer'], {}, /EDGEFL_INVOKE_SECRET is not set: this trainer refuses to start unauthenticated.*--insecure \(EDGEFL_INSECURE=1\)/],
      [['aggregator'], {}, /EDGEFL_INVOKE_SECRET and EDGEFL_ADMIN_TOKEN are not set: this aggregator refuses to start unauthenticated/],
      [['aggregator'], { EDGEFL_INVOKE_SECRET: good }, /EDGEFL_ADMIN_TOKEN is not set/],
    ];
    for (const [args, env, message] of cases) {
      const { code, out } = await exitOf(await start(args, { EDGEFL_INVOKE_SECRET: '', EDGEFL_ADMIN_TOKEN: '', ...env }));
      expect(code, out).toBe(2);
      expect(out).toMatch(message);
    }
  });

  it('refuses placeholder and short secrets even with --insecure', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['trainer'], { EDGEFL_INVOKE_SECRET: placeholder }, /EDGEFL_INVOKE_SECRET is a placeholder \(starts with 'CHANGE-ME'\)/],
      [['trainer', '--insecure'], { EDGEFL_INVOKE_SECRET: 'short' }, /EDGEFL_INVOKE_SECRET is shorter than 16 characters/],
      [['aggregator'], { EDGEFL_INVOKE_SECRET: good, EDGEFL_ADMIN_TOKEN: 'CHANGE-ME-admin-token' }, /EDGEFL_ADMIN_TOKEN is a placeholder/],
      [['serve'], { EDGEFL_API_KEYS: 'CHANGE-ME-key' }, /a key in EDGEFL_API_KEYS is a placeholder/],
    ];
    for (const [args, env, message] of cases) {
      const { code, out } = await exitOf(await start(args, env));
      expect(code, out).toBe(2);
      expect(out).toMatch(message);
      expect(out.trim().split('\n')).toHaveLength(1); // one line, no stack
    }
  });

  it('an aggregator started with --insecure says so at start and on GET /status', async () => {
    const agg = await start(['aggregator', '--insecure'], { EDGEFL_INVOKE_SECRET: '', EDGEFL_ADMIN_TOKEN: '' });
    const res = await waitFor(agg, '/status', (r) => r.status === 200);
    expect(await res.json()).toEqual({ service: 'edgefl-aggregator', insecure: true, auth: { admin: 'off', trainerInvocation: 'off', secrets: 'none' } });
    expect(agg.log.join('')).toMatch(/"level":"warn".*INSECURE: authentication is off.*start and stop runs/);
    agg.proc.kill('SIGTERM');
    expect(await agg.exited).toBe(0);
  });

  it('with its secrets, an aggregator reports authentication on and never shows them', async () => {
    const agg = await start(['aggregator'], { EDGEFL_INVOKE_SECRET: good, EDGEFL_ADMIN_TOKEN: `${good}-admin` });
    const res = await waitFor(agg, '/status', (r) => r.status === 200);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ insecure: false, auth: { admin: 'bearer-token', trainerInvocation: 'hmac-token', secrets: 'environment' } });
    expect(text + agg.log.join('')).not.toContain(good);
    agg.proc.kill('SIGTERM');
    expect(await agg.exited).toBe(0);
  });
});

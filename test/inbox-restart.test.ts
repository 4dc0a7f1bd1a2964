import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights } from '../services/core/model.js';
import { freePort } from '../services/harness/ports.js';
import { spawnService, type ServiceChild } from '../services/harness/process.js';
import { nodeBox, type NodeBox, type OutboxRecord } from '../services/inbox/outbox.js';
import { watchInbox, type InboxWatcher } from '../services/inbox/watch.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { digitPng, heldOutDigits, weightsRow } from './helpers/digits.js';
import { publishPromoted } from './helpers/promote.js';

const root = path.resolve(import.meta.dirname, '..');
const N = 200;
const digits = heldOutDigits(N);
let db: TestDatabase;
let dir: string;
let port: number;
let serving: ServiceChild | undefined;
let watcher: InboxWatcher | undefined;

/** `edgefl serve` from dist/, as up starts it: a separate process that can be killed. */
async function startServing(): Promise<ServiceChild> {
  const child = spawnService({
    name: 'serving',
    args: [path.join(root, 'services/cli/bin.mjs'), 'serve', '--port', String(port)],
    cwd: root,
    env: { DATABASE_URL: db.url, EDGEFL_LOG_LEVEL: 'warn', EDGEFL_MEMORY_LIMIT_MIB: '256' },
  });
  await child.waitReady(`http://127.0.0.1:${port}/v2/health/ready`, { timeoutMs: 90_000, intervalMs: 100 });
  return child;
}

beforeAll(async () => {
  await initBackend('cpu');
  db = await createTestDatabase();
  const model = buildModel(3);
  await publishPromoted(db.pool, weightsRow(getFlatWeights(model)));
  model.dispose();
  port = await freePort();
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-restart-'));
  serving = await startServing();
}, 120_000);

afterAll(async () => {
  await watcher?.stop();
  await serving?.stop();
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

const storedCount = async () => Number((await db.pool.query('SELECT count(*) AS n FROM predictions')).rows[0].n);

function dropAll(box: NodeBox): void {
  for (let i = 0; i < N; i++) {
    const name = `digit-${String(i).padStart(3, '0')}.png`;
    writeFileSync(path.join(box.inbox, `${name}.part`), digitPng(digits, i));
    renameSync(path.join(box.inbox, `${name}.part`), path.join(box.inbox, name));
  }
}

describe('the serving function killed mid-batch', () => {
  it('kill -9 while the inbox is being classified, then a restart: exactly one record per image, in the outbox and in PostgreSQL', async () => {
    const box = nodeBox(dir, 'node-0');
    dropAll(box);
    watcher = watchInbox({ box, servingUrl: `http://127.0.0.1:${port}`, pollMs: 50, settleMs: 0, concurrency: 4 });
    await vi.waitFor(async () => expect(await storedCount()).toBeGreaterThanOrEqual(10), { timeout: 60_000, interval: 20 });
    serving!.signal('SIGKILL');
    await serving!.exited;
    // Mid-batch: some images were stored, not all were recorded (else this test proves nothing).
    const atKill = readdirSync(box.processed).length;
    expect(atKill).toBeLessThan(N);
    // The watcher keeps every unrecorded image and keeps retrying while the function is down.
    const retriesAtKill = watcher.stats.retries;
    await vi.waitFor(() => expect(watcher!.stats.retries).toBeGreaterThan(retriesAtKill), { timeout: 30_000, interval: 50 });
    expect(readdirSync(box.inbox).length + readdirSync(box.processed).length).toBe(N);

    serving = await startServing();
    await vi.waitFor(() => expect(readdirSync(box.processed)).toHaveLength(N), { timeout: 120_000, interval: 100 });
    expect(readdirSync(box.inbox)).toEqual([]);
    const outbox = readdirSync(box.outbox).filter((f) => f.endsWith('.json'));
    expect(outbox).toHaveLength(N);
    const rows = (await db.pool.query('SELECT request_id, item, source, class FROM predictions ORDER BY source')).rows;
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((r) => r.source)).size).toBe(N);
    for (const row of rows) {
      const r = JSON.parse(readFileSync(path.join(box.outbox, `${row.source}.json`), 'utf8')) as OutboxRecord;
      expect(r.request_id).toBe(row.request_id);
      expect(r.class).toBe(row.class);
    }
    expect(watcher.stats).toMatchObject({ files: N, results: N, errors: 0 });
  });
});

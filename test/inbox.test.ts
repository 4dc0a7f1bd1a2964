import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { createLogger } from '../services/shared/log.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { nodeBox, type NodeBox, type OutboxRecord } from '../services/inbox/outbox.js';
import { watchInbox, type InboxWatcher } from '../services/inbox/watch.js';
import { encodeIdx } from '../datasets/idx.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { digitPng, heldOutDigits, trainedWeights, weightsRow } from './helpers/digits.js';
import { publishPromoted } from './helpers/promote.js';
import { serverGroup } from './helpers/serve.js';

const quiet = createLogger({}, 'error', () => {});
const servers = serverGroup();
const N = 100;
const digits = heldOutDigits(N);
let db: TestDatabase;
let url: string;
let dir: string;
const watchers: InboxWatcher[] = [];

beforeAll(async () => {
  await initBackend('wasm');
  db = await createTestDatabase();
  await publishPromoted(db.pool, weightsRow(await trainedWeights()));
  const holder = new ModelHolder(db.pool, quiet, undefined, 'node-0');
  await holder.refresh();
  url = (await servers.listen(createServingApp({ holder, log: quiet, nodeId: 'node-0', maxBatch: 64, maxBodyBytes: 4 * 2 ** 20, pool: db.pool }))).url;
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-inbox-'));
}, 400_000);

afterAll(async () => {
  await Promise.all(watchers.map((w) => w.stop()));
  await servers.closeAll();
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

function watch(box: NodeBox, servingUrl = url): InboxWatcher {
  const w = watchInbox({ box, servingUrl, pollMs: 50, settleMs: 0 });
  watchers.push(w);
  return w;
}

/** Drops a file as a careful writer does: written under a temporary name, then renamed into the inbox. */
function drop(box: NodeBox, name: string, bytes: Buffer): void {
  const tmp = path.join(box.inbox, `${name}.part`);
  writeFileSync(tmp, bytes);
  renameSync(tmp, path.join(box.inbox, name));
}

const records = (box: NodeBox) => readdirSync(box.outbox).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
const record = (box: NodeBox, name: string) => JSON.parse(readFileSync(path.join(box.outbox, `${name}.json`), 'utf8')) as OutboxRecord;
/** The stored records of every file in the box's outbox. */
async function rowsOf(box: NodeBox) {
  const ids = records(box).map((f) => (JSON.parse(readFileSync(path.join(box.outbox, f), 'utf8')) as OutboxRecord).request_id);
  return (await db.pool.query('SELECT request_id, item, source, class, error_code FROM predictions WHERE request_id = ANY($1)', [ids])).rows;
}

describe('the inbox of an edge node (OSCAR-style input and output buckets)', () => {
  it(`${N} PNG digits dropped in the inbox: ${N} records in the outbox and in PostgreSQL, >= 95% correct`, async () => {
    const box = nodeBox(dir, 'node-0');
    watch(box);
    for (let i = 0; i < N; i++) drop(box, `digit-${String(i).padStart(3, '0')}.png`, digitPng(digits, i));
    await vi.waitFor(() => expect(readdirSync(box.processed)).toHaveLength(N), { timeout: 60_000, interval: 100 });
    expect(records(box)).toHaveLength(N);
    expect(readdirSync(box.inbox)).toEqual([]);
    let correct = 0;
    for (let i = 0; i < N; i++) {
      const r = record(box, `digit-${String(i).padStart(3, '0')}.png`);
      expect(r.error).toBeUndefined();
      expect(r.probabilities).toHaveLength(10);
      if (r.class === digits.labels[i]) correct++;
    }
    expect(correct / N).toBeGreaterThanOrEqual(0.95);
    const rows = await rowsOf(box);
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((r) => r.source)).size).toBe(N);
    // The outbox and PostgreSQL agree, image by image.
    for (const row of rows) expect(record(box, row.source).class).toBe(row.class);
  });

  it('a corrupt file becomes an error record (outbox and PostgreSQL); the watcher goes on with the next file', async () => {
    const box = nodeBox(dir, 'node-1');
    const w = watch(box);
    drop(box, 'broken.png', digitPng(digits, 0).subarray(0, 70));
    drop(box, 'notes.txt', Buffer.from('not an image at all'));
    drop(box, 'after.png', digitPng(digits, 1));
    await vi.waitFor(() => expect(readdirSync(box.processed)).toHaveLength(3), { timeout: 30_000, interval: 100 });
    expect(record(box, 'broken.png').error?.code).toBe('undecodable_image');
    expect(record(box, 'notes.txt').error?.code).toBe('unsupported_image');
    expect(record(box, 'after.png').class).toBe(digits.labels[1]);
    const rows = await rowsOf(box);
    expect(rows.map((r) => [r.source, r.error_code]).sort()).toEqual([['after.png', null], ['broken.png', 'undecodable_image'], ['notes.txt', 'unsupported_image']]);
    expect(w.stats).toMatchObject({ files: 3, results: 1, errors: 2 });
  });

  it('an IDX batch file (gzipped) is split into chunks of one request: one record per image; a broken one is one error record', async () => {
    const box = nodeBox(dir, 'node-2');
    const count = 150;
    const set = heldOutDigits(count, 1000);
    const bytes = Buffer.from(Array.from(set.images, (v) => Math.round(v * 255)));
    drop(box, 'batch-idx3-ubyte.gz', gzipSync(encodeIdx([count, 28, 28], bytes)));
    drop(box, 'truncated-idx3-ubyte', encodeIdx([count, 28, 28], bytes).subarray(0, 1000));
    // Chunks of 100 are more than this function's batch limit (64): the watcher halves them.
    const w = watchInbox({ box, servingUrl: url, pollMs: 50, settleMs: 0, chunk: 100 });
    watchers.push(w);
    await vi.waitFor(() => expect(readdirSync(box.processed)).toHaveLength(2), { timeout: 60_000, interval: 100 });
    const batch = record(box, 'batch-idx3-ubyte.gz');
    expect(batch).toMatchObject({ count, results: count, errors: 0 });
    const classes = (batch.predictions as { item: number; class: number }[]).map((p) => p.class);
    expect(classes.filter((c, i) => c === set.labels[i]).length / count).toBeGreaterThanOrEqual(0.95);
    const rows = (await db.pool.query('SELECT item FROM predictions WHERE request_id = $1 ORDER BY item', [batch.request_id])).rows;
    expect(rows.map((r) => r.item)).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(record(box, 'truncated-idx3-ubyte').error?.code).toBe('invalid_batch_file');
  });

  it('a file already classified before a crash (results stored, file still in the inbox) is sent again and deduplicated', async () => {
    const box = nodeBox(dir, 'node-3');
    // The crash: the function stored this file's result, but the watcher never wrote its record or moved it.
    const bytes = digitPng(digits, 5);
    drop(box, 'five.png', bytes);
    const requestId = `inbox-${createHash('sha256').update('node-3\0five.png\0').update(bytes).digest('hex').slice(0, 32)}`;
    const holder = new ModelHolder(db.pool, quiet, undefined, 'node-3');
    await holder.refresh();
    const app = createServingApp({ holder, log: quiet, nodeId: 'node-3', maxBatch: 64, maxBodyBytes: 4 * 2 ** 20, pool: db.pool });
    const nodeUrl = (await servers.listen(app)).url;
    const first = await fetch(`${nodeUrl}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: requestId, source: 'five.png', images: [{ name: 'five.png', data: bytes.toString('base64') }] }) });
    expect(first.status).toBe(200);
    watch(box, nodeUrl);
    await vi.waitFor(() => expect(readdirSync(box.processed)).toEqual(['five.png']), { timeout: 30_000, interval: 100 });
    expect(record(box, 'five.png').request_id).toBe(requestId);
    expect(await rowsOf(box)).toHaveLength(1);
  });

  it('refused for good (a 4xx that will not change) is an error record too; nothing waits forever', async () => {
    const box = nodeBox(dir, 'node-4');
    // A function with a 64 KiB body limit: a large image is refused with 413.
    const holder = new ModelHolder(db.pool, quiet, undefined, 'node-4');
    await holder.refresh();
    const small = (await servers.listen(createServingApp({ holder, log: quiet, nodeId: 'node-4', maxBatch: 64, maxBodyBytes: 64 * 1024, pool: db.pool }))).url;
    watch(box, small);
    const noise = Buffer.alloc(60 * 1024, 7);
    drop(box, 'huge.png', Buffer.concat([digitPng(digits, 0), noise]));
    await vi.waitFor(() => expect(readdirSync(box.processed)).toEqual(['huge.png']), { timeout: 30_000, interval: 100 });
    expect(record(box, 'huge.png').error?.code).toBe('body_too_large');
  });
});

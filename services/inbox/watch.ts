import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdxFormatError, readIdxImages } from '../../datasets/idx.js';
import { INFERENCE_EVENTS } from '../serving/inference-inputs.js';
import type { CompletedItem, InferenceCompleted } from '../serving/inference-events.js';
import { PIXELS } from '../core/model.js';
import { isInProgressName, markProcessed, writeRecord, type NodeBox, type OutboxError, type OutboxRecord } from './outbox.js';

export interface WatchOptions {
  box: NodeBox;
  /** The node's serving function; events go to `<url>/`. */
  servingUrl: string;
  apiKey?: string;
  /** Files in flight at once (default 4); the serving function merges their images into one tensor call. */
  concurrency?: number;
  /** Images per event when a batch file is split (default 500; halved when the function says it is too many). */
  chunk?: number;
  pollMs?: number;
  /** A file is picked up once unchanged for this long (a writer that copies slowly; renaming into the inbox is instant). */
  settleMs?: number;
  onRecord?: (name: string, record: OutboxRecord) => void;
  onError?: (message: string) => void;
}

export interface WatchStats {
  files: number;
  results: number;
  errors: number;
  /** Deliveries that failed (function down, restarting, overloaded) and were sent again. */
  retries: number;
}

export interface InboxWatcher {
  stats: WatchStats;
  stop(): Promise<void>;
}

class Stopped extends Error {}

const RETRYABLE = new Set([404, 408, 409, 425, 429]); // as Knative Eventing's delivery retries, plus every 5xx
const MAX_FILE_BYTES = 256 * 2 ** 20;

/**
 * The storage event source of one edge node, on one machine: polls the node's inbox and turns
 * every file that appears into `dev.edgefl.inference.requested` events to its serving function
 * (a PNG or JPEG: one event; an IDX batch file: chunks of a UINT8 tensor). Delivery is
 * at-least-once (retried with backoff while the function is down, restarting or busy) and
 * idempotent, because the request id is a hash of node, file name and content: the record is
 * written to the outbox and the file moved to `processed` only after the function has stored
 * the results, so a crash anywhere resends and the function replays what it stored.
 */
export function watchInbox(opts: WatchOptions): InboxWatcher {
  const { box } = opts;
  const stats: WatchStats = { files: 0, results: 0, errors: 0, retries: 0 };
  const abort = new AbortController();
  const inFlight = new Set<string>();
  const queue: string[] = [];
  const running = new Set<Promise<void>>();
  const concurrency = opts.concurrency ?? 4;
  const settleMs = opts.settleMs ?? 200;
  const report = opts.onError ?? (() => {});

  const scan = () => {
    let names: string[];
    try {
      names = readdirSync(box.inbox);
    } catch (e) {
      return report(`${box.node}: cannot read ${box.inbox}: ${(e as Error).message}`);
    }
    for (const name of names.sort()) {
      if (inFlight.has(name) || isInProgressName(name)) continue;
      try {
        const info = statSync(path.join(box.inbox, name));
        if (!info.isFile() || Date.now() - info.mtimeMs < settleMs) continue;
      } catch {
        continue; // gone between listing and stat
      }
      inFlight.add(name);
      queue.push(name);
    }
    pump();
  };
  const pump = () => {
    while (running.size < concurrency && queue.length && !abort.signal.aborted) {
      const name = queue.shift()!;
      const job = processFile(name)
        .catch((e) => {
          // Left in the inbox: the next scan tries it again.
          if (!(e instanceof Stopped)) report(`${box.node}: ${name}: ${(e as Error).message}`);
        })
        .finally(() => {
          running.delete(job);
          inFlight.delete(name);
          pump();
        });
      running.add(job);
    }
  };

  async function processFile(name: string): Promise<void> {
    const file = path.join(box.inbox, name);
    const size = statSync(file).size;
    let record: OutboxRecord;
    if (size > MAX_FILE_BYTES) record = { request_id: '', node: box.node, source: name, error: { code: 'file_too_large', message: `${name} is ${size} bytes; files up to ${MAX_FILE_BYTES} are read` } };
    else {
      const bytes = await readFile(file);
      const requestId = `inbox-${createHash('sha256').update(`${box.node}\0${name}\0`).update(bytes).digest('hex').slice(0, 32)}`;
      record = isBatchFile(bytes) ? await classifyBatch(file, name, requestId) : await classifyImage(name, bytes, requestId);
    }
    writeRecord(box, name, record);
    markProcessed(box, name);
    stats.files++;
    const errors = record.errors ?? (record.error ? 1 : 0);
    stats.errors += errors;
    stats.results += record.results ?? (record.error ? 0 : 1);
    opts.onRecord?.(name, record);
  }

  async function classifyImage(name: string, bytes: Buffer, requestId: string): Promise<OutboxRecord> {
    const head = { request_id: requestId, node: box.node, source: name };
    const sent = await deliver(requestId, { request_id: requestId, source: name, images: [{ name, data: bytes.toString('base64') }] });
    if ('error' in sent) return { ...head, error: sent.error };
    const [p] = sent.completed.predictions;
    return p && 'class' in p ? { ...head, model_version: p.model_version, class: p.class, probabilities: p.probabilities, latency_ms: p.latency_ms } : { ...head, error: p && 'error' in p ? p.error : { code: 'no_result', message: 'the function returned no record' } };
  }

  async function classifyBatch(file: string, name: string, requestId: string): Promise<OutboxRecord> {
    const head = { request_id: requestId, node: box.node, source: name };
    let images: ReturnType<typeof readIdxImages>;
    try {
      images = readIdxImages(file);
      if (images.rows * images.cols !== PIXELS) throw new IdxFormatError(name, `images are ${images.rows}x${images.cols}; the model reads ${PIXELS} pixels`);
    } catch (e) {
      if (!(e instanceof IdxFormatError)) throw e;
      return { ...head, error: { code: 'invalid_batch_file', message: e.message.replace(file, name) } };
    }
    const predictions: CompletedItem[] = [];
    let chunk = opts.chunk ?? 500;
    for (let offset = 0; offset < images.count; ) {
      const n = Math.min(chunk, images.count - offset);
      const rows = Buffer.from(Array.from(images.pixels.subarray(offset * PIXELS, (offset + n) * PIXELS), (v) => Math.round(v * 255)));
      const sent = await deliver(`${requestId}:${offset}`, { request_id: requestId, source: name, offset, tensor: { datatype: 'UINT8', count: n, data: rows.toString('base64') } });
      if ('error' in sent && sent.status === 413 && chunk > 1) {
        chunk = Math.ceil(chunk / 2); // the function's batch or body limit is lower: same offset, smaller chunk
        continue;
      }
      if ('error' in sent) return { ...head, error: sent.error };
      predictions.push(...sent.completed.predictions);
      offset += n;
    }
    const errors = predictions.filter((p) => 'error' in p).length;
    const versions = predictions.flatMap((p) => ('model_version' in p && p.model_version !== null ? [p.model_version] : []));
    return { ...head, model_version: versions.length ? Math.max(...versions) : null, count: predictions.length, results: predictions.length - errors, errors, predictions };
  }

  /** Sends one event until the function answers it: its completed data, or why it refused the event for good. */
  async function deliver(id: string, data: Record<string, unknown>): Promise<{ completed: InferenceCompleted } | { status: number; error: OutboxError }> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-type': INFERENCE_EVENTS.requested,
      'ce-source': `/edgefl/inbox/${box.node}`,
      'ce-id': id,
      ...(opts.apiKey ? { 'x-api-key': opts.apiKey } : {}),
    };
    const body = JSON.stringify(data);
    for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
      if (abort.signal.aborted) throw new Stopped();
      let wait = delay;
      try {
        const res = await fetch(`${opts.servingUrl}/`, { method: 'POST', headers, body, signal: abort.signal });
        if (res.ok) return { completed: (await res.json()) as InferenceCompleted };
        const refused = (await res.json().catch(() => ({}))) as { error?: OutboxError };
        if (res.status < 500 && !RETRYABLE.has(res.status)) return { status: res.status, error: refused.error ?? { code: `http_${res.status}`, message: `the serving function answered ${res.status}` } };
        wait = Math.max(delay, Number(res.headers.get('retry-after') ?? 0) * 1000);
      } catch (e) {
        if (abort.signal.aborted) throw new Stopped();
        // Connection refused or reset: the function is down or restarting.
        void e;
      }
      stats.retries++;
      await sleep(wait, undefined, { signal: abort.signal }).catch(() => {
        throw new Stopped();
      });
    }
  }

  const timer = setInterval(scan, opts.pollMs ?? 250);
  scan();
  return {
    stats,
    async stop() {
      clearInterval(timer);
      abort.abort();
      await Promise.allSettled([...running]);
    },
  };
}

/** IDX image files (raw or gzipped) are batches; everything else is sent as one image (the function records what it cannot decode). */
export function isBatchFile(bytes: Buffer): boolean {
  const gzip = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  return gzip || (bytes.length >= 4 && bytes.readUInt32BE(0) === 0x00000803);
}

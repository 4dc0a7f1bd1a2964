import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * One edge node's storage, like OSCAR's input and output buckets: files dropped into `inbox`
 * are classified, each gets one JSON record in `outbox` (a result or an error), and only then
 * does the input move to `processed`. A file still in `inbox` is therefore not yet recorded:
 * after any crash, the next scan sends it again and the request id makes that a replay.
 */
export interface NodeBox {
  node: string;
  inbox: string;
  outbox: string;
  processed: string;
}

/** `<dir>/<node>/{inbox,outbox,processed}`, created if missing. */
export function nodeBox(dir: string, node: string): NodeBox {
  const root = path.resolve(dir, node);
  const box = { node, inbox: path.join(root, 'inbox'), outbox: path.join(root, 'outbox'), processed: path.join(root, 'processed') };
  for (const d of [box.inbox, box.outbox, box.processed]) mkdirSync(d, { recursive: true });
  return box;
}

export interface OutboxError {
  code: string;
  message: string;
}

/** What the outbox holds for one input file: a single image's result or error, or a batch file's records. */
export interface OutboxRecord {
  request_id: string;
  node: string;
  source: string;
  model_version?: number | null;
  class?: number;
  probabilities?: number[];
  latency_ms?: number;
  error?: OutboxError;
  /** Batch files: one entry per image, in file order. */
  count?: number;
  results?: number;
  errors?: number;
  predictions?: unknown[];
}

/** `<name>.json` in the outbox, written whole or not at all (a reader never sees half a record). */
export function writeRecord(box: NodeBox, name: string, record: OutboxRecord): string {
  const file = path.join(box.outbox, `${name}.json`);
  const tmp = path.join(box.outbox, `.${name}.json.tmp`);
  writeFileSync(tmp, JSON.stringify(record, null, 2) + '\n');
  renameSync(tmp, file);
  return file;
}

/** After its record is written: the input leaves the inbox (a later file of the same name replaces it). */
export function markProcessed(box: NodeBox, name: string): void {
  try {
    renameSync(path.join(box.inbox, name), path.join(box.processed, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Files the watcher leaves alone: hidden ones and those still being written under a temporary name. */
export function isInProgressName(name: string): boolean {
  return name.startsWith('.') || /\.(tmp|part|partial|crdownload)$/i.test(name);
}

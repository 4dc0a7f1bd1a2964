/**
 * Every node's shard of the built-in partition, cut once per data directory and kept in a file
 * per node (DATA_DIR/shards/<key>/node-<i>.bin), so a trainer that starts on demand reads its
 * own 80–600 samples instead of decoding the whole dataset and partitioning it again: with 100
 * nodes behind the activator that decode was a third of every cold start's CPU. The first
 * trainer that finds no file cuts the partition (which yields every node's shard anyway) and
 * writes them all; concurrent writers are harmless (each file appears by an atomic rename).
 * Node-local data (EDGEFL_NODE_DATA) is each node's own already and is not cached here.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { compiledSibling } from '../shared/compiled.js';
import type { Config } from '../shared/config.js';
import { loadDataset, partition, subset } from '../../datasets/index.js';
import type { ImageSet } from '../../datasets/types.js';

const MAGIC = 'edgefl-shard-1\n';

interface ShardHeader {
  count: number;
  rows: number;
  cols: number;
  channels?: number;
  numClasses: number;
  /** u8: pixels stored as k/255 exactly (IDX files); f32: as they are (the built-in digits have 3 decimals). */
  pixels: 'u8' | 'f32';
}

/** Everything the built-in partition of one node depends on; another value is another cache directory. */
export function shardCacheKey(cfg: Config): string {
  const { dataset, idxDir, testSize, seed, maxTrainSamples } = cfg.data;
  // An IDX directory's files may be replaced: its modification time is part of the key.
  const idx = dataset === 'idx' && idxDir ? { dir: path.resolve(idxDir), mtime: statSync(idxDir).mtimeMs } : undefined;
  const key = JSON.stringify({ dataset, idx, testSize, seed, maxTrainSamples, partition: cfg.partition });
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

export const shardFile = (dir: string, node: number) => path.join(dir, `node-${node}.bin`);

/** This node's shard from the cache, cutting and writing every node's first when it is missing. */
export async function cachedNodeShard(cfg: Config, log: (msg: string, fields?: Record<string, unknown>) => void): Promise<ImageSet> {
  const dir = path.join(cfg.dataDir, 'shards', shardCacheKey(cfg));
  const file = shardFile(dir, cfg.nodeId);
  const cached = readShard(file);
  if (cached) return cached;
  // The cut decodes the whole dataset: some 60 MB of buffers that, cut here, would stay in this
  // trainer's RSS until a garbage collection that an idle function may never run. A worker
  // thread cuts and writes instead, and its memory goes when it exits.
  const cut = await cutInWorker({ data: cfg.data, partition: cfg.partition }, dir);
  if (cut.ok) {
    const written = readShard(file);
    if (written) {
      log('cut the partition once for every node', { dir, nodes: cut.nodes, in: 'a worker thread' });
      return written;
    }
  }
  // No compiled worker, or it could not write (a read-only data directory): cut here.
  const shards = allNodeShards(cfg);
  try {
    writeShards(shards, dir);
    log('cut the partition once for every node', { dir, nodes: shards.length, in: 'the trainer thread', why: cut.ok ? 'its file was not readable' : cut.err });
  } catch (e) {
    // A read-only data directory costs speed, not correctness.
    log('could not cache the partition; each start will cut it again', { dir, err: (e as Error).message });
  }
  return shards[cfg.nodeId]!;
}

/** A shard file's contents, or undefined when it is missing or unreadable (a torn file cannot appear: files are renamed into place). */
function readShard(file: string): ImageSet | undefined {
  try {
    return decodeShard(readFileSync(file));
  } catch {
    return undefined;
  }
}

/** What cutting the built-in partition depends on (what a worker thread is sent). */
export type ShardCut = Pick<Config, 'data' | 'partition'>;

type CutResult = { ok: true; nodes: number } | { ok: false; err: string };

/** Cuts the partition and writes every node's file into `dir`; run in the worker thread (shard-cut-worker.ts). */
export function cutAndWriteShards(cut: ShardCut, dir: string): number {
  const shards = allNodeShards(cut);
  writeShards(shards, dir);
  return shards.length;
}

function writeShards(shards: readonly ImageSet[], dir: string): void {
  mkdirSync(dir, { recursive: true });
  shards.forEach((set, node) => writeAtomically(shardFile(dir, node), encodeShard(set)));
}

function cutInWorker(cut: ShardCut, dir: string): Promise<CutResult> {
  const script = compiledSibling(import.meta.url, 'shard-cut-worker.js');
  if (!script) return Promise.resolve({ ok: false, err: 'no compiled shard-cut-worker.js' });
  return new Promise((resolve) => {
    const worker = new Worker(script, { workerData: { cut, dir } });
    worker.once('message', (r: CutResult) => resolve(r));
    worker.once('error', (e) => resolve({ ok: false, err: e.message }));
    worker.once('exit', (code) => resolve({ ok: false, err: `the worker exited with code ${code} before answering` }));
  });
}

/** Every node's shard, exactly as loadNodeShard (services/core/node-data.ts) cuts one. */
export function allNodeShards(cfg: ShardCut): ImageSet[] {
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  const p = cfg.partition;
  const shards = partition(split.train.labels, split.train.numClasses, { kind: p.kind, nodes: p.nodes, seed: p.seed, alpha: p.alpha, shardsPerNode: p.shardsPerNode });
  const cap = cfg.data.maxTrainSamples;
  return shards.map((s) => subset(split.train, cap > 0 && s.indices.length > cap ? s.indices.slice(0, cap) : s.indices));
}

function writeAtomically(file: string, bytes: Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, file);
}

export function encodeShard(set: ImageSet): Buffer {
  const u8 = set.images.every((v) => Math.fround(Math.round(v * 255) / 255) === v);
  const header: ShardHeader = { count: set.count, rows: set.rows, cols: set.cols, channels: set.channels, numClasses: set.numClasses, pixels: u8 ? 'u8' : 'f32' };
  const head = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.length);
  const pixels = u8 ? Buffer.from(Uint8Array.from(set.images, (v) => Math.round(v * 255))) : Buffer.from(set.images.buffer, set.images.byteOffset, set.images.byteLength);
  return Buffer.concat([Buffer.from(MAGIC), len, head, Buffer.from(set.labels), pixels]);
}

export function decodeShard(bytes: Buffer): ImageSet {
  if (bytes.subarray(0, MAGIC.length).toString() !== MAGIC) throw new Error('not an edgefl shard file');
  const headLen = bytes.readUInt32LE(MAGIC.length);
  let at = MAGIC.length + 4;
  const h = JSON.parse(bytes.subarray(at, (at += headLen)).toString()) as ShardHeader;
  const labels = Uint8Array.from(bytes.subarray(at, (at += h.count)));
  const n = h.count * h.rows * h.cols * (h.channels ?? 1);
  const images = new Float32Array(n);
  if (h.pixels === 'u8') {
    for (let i = 0; i < n; i++) images[i] = bytes[at + i]! / 255;
  } else {
    // Copied out: the file's buffer need not be 4-byte aligned.
    new Uint8Array(images.buffer).set(bytes.subarray(at, at + n * 4));
  }
  if (bytes.length !== at + (h.pixels === 'u8' ? n : n * 4)) throw new Error('shard file has the wrong length');
  const set: ImageSet = { images, labels, count: h.count, rows: h.rows, cols: h.cols, numClasses: h.numClasses };
  if (h.channels !== undefined) set.channels = h.channels;
  return set;
}

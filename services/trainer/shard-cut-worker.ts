/**
 * Worker thread of shard-cache.ts: cuts the built-in partition, writes every node's file and
 * exits, taking the decoded dataset's memory with it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { cutAndWriteShards, type ShardCut } from './shard-cache.js';

const { cut, dir } = workerData as { cut: ShardCut; dir: string };
try {
  parentPort!.postMessage({ ok: true, nodes: cutAndWriteShards(cut, dir) });
} catch (e) {
  parentPort!.postMessage({ ok: false, err: (e as Error).message });
}

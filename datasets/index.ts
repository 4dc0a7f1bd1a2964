import { builtinMnistSplit } from './builtin-mnist.js';
import { loadIdxDir } from './idx.js';
import { partition, type PartitionOptions, type NodeShard } from './partition.js';
import { subset, type ImageSet, type TrainTestSplit } from './types.js';

export type DatasetKind = 'mnist' | 'idx';

export interface DatasetOptions {
  dataset: DatasetKind;
  idxDir?: string;
  testSize?: number;
  seed?: number;
}

export function loadDataset(opts: DatasetOptions): TrainTestSplit {
  if (opts.dataset === 'idx') {
    if (!opts.idxDir) throw new Error('dataset "idx" needs an IDX directory (--idx-dir / EDGEFL_IDX_DIR)');
    return loadIdxDir(opts.idxDir);
  }
  if (opts.dataset !== 'mnist') throw new Error(`unknown dataset '${String(opts.dataset)}', expected mnist or idx`);
  return builtinMnistSplit({ testSize: opts.testSize, seed: opts.seed });
}

/** The private training shard of one node: what a trainer holds and nothing more. */
export function nodeShard(train: ImageSet, nodeId: number, opts: PartitionOptions): { data: ImageSet; shard: NodeShard } {
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId >= opts.nodes) throw new Error(`node id ${nodeId} is outside 0..${opts.nodes - 1}`);
  const shard = partition(train.labels, train.numClasses, opts)[nodeId]!;
  return { data: subset(train, shard.indices), shard };
}

export { partition, subset };
export type { ImageSet, TrainTestSplit, PartitionOptions, NodeShard };

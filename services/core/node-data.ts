import type { Config } from '../shared/config.js';
import { loadDataset, nodeShard } from '../../datasets/index.js';
import { labelHistogram, subset, type ImageSet } from '../../datasets/types.js';

/**
 * This node's private training shard. Every node derives the same partition from the
 * shared seed and keeps only its own part; in a real deployment the shard would be
 * the node's local data and this is where it would be read from.
 */
export function loadNodeShard(cfg: Config): { shard: ImageSet; histogram: number[] } {
  const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
  let { data } = nodeShard(split.train, cfg.nodeId, {
    kind: cfg.partition.kind,
    nodes: cfg.partition.nodes,
    seed: cfg.partition.seed,
    alpha: cfg.partition.alpha,
    shardsPerNode: cfg.partition.shardsPerNode,
  });
  if (cfg.data.maxTrainSamples > 0 && data.count > cfg.data.maxTrainSamples) {
    data = subset(data, Array.from({ length: cfg.data.maxTrainSamples }, (_, i) => i));
  }
  return { shard: data, histogram: labelHistogram(data.labels, data.numClasses) };
}

/** The held-out set the aggregator evaluates on (never a node's data). */
export function loadHeldOut(cfg: Config): ImageSet {
  return loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed }).test;
}

import type { Config } from '../shared/config.js';
import { loadDataset, nodeShard } from '../../datasets/index.js';
import { loadNodeDir, NodeDataError } from '../../datasets/node-dir.js';
import { labelHistogram, subset, type ImageSet } from '../../datasets/types.js';
import { REFERENCE_CNN, type ModelSpec } from './model-spec.js';
import { orderWeights, readLayersModelFile } from './layers-model.js';
import { tensorSpecsOf } from './model.js';
import { builtinModel } from './model-zoo.js';
import { HttpError } from '../http/errors.js';

export interface NodeShardData {
  shard: ImageSet;
  histogram: number[];
  /** Files skipped as unreadable (node-local data only). */
  skipped: number;
  /** Where the data came from, for messages: a directory or the built-in partition. */
  source: string;
}

/** The deployment's model from EDGEFL_MODEL, a built-in name or a model.json (spec and, when the file has them, weights), or undefined for the reference CNN. */
export function loadDeploymentModel(cfg: Config): { spec: ModelSpec; weights?: Float32Array; source: string } | undefined {
  if (!cfg.model) return undefined;
  // A built-in name (model-zoo.ts): the scattering models have a layer no Layers model.json describes.
  const builtin = builtinModel(cfg.model);
  if (builtin) return { spec: builtin, source: `the built-in ${cfg.model}` };
  const file = readLayersModelFile(cfg.model);
  const weights = file.weights.size ? orderWeights(file.weights, tensorSpecsOf(file.spec)) : undefined;
  return { spec: file.spec, weights, source: cfg.model };
}

const shardOpts = (cfg: Config) => ({
  kind: cfg.partition.kind,
  nodes: cfg.partition.nodes,
  seed: cfg.partition.seed,
  alpha: cfg.partition.alpha,
  shardsPerNode: cfg.partition.shardsPerNode,
});

/**
 * This node's private training data for a model input shape. With EDGEFL_NODE_DATA it is the
 * node's own directory (all of it with EDGEFL_PARTITION=none; else this node's part of it, for
 * simulations from one folder); otherwise this node's part of the built-in digits or IDX set,
 * derived from the shared seed as every node does.
 */
export function loadNodeShard(cfg: Config, spec: ModelSpec = REFERENCE_CNN): NodeShardData {
  let data: ImageSet;
  let skipped = 0;
  let source = 'the built-in partition';
  if (cfg.nodeData) {
    const dir = loadNodeDir(cfg.nodeData, spec.inputShape);
    ({ skipped, source } = dir);
    data = cfg.partition.kind === 'none' || dir.set.count === 0 ? dir.set : nodeShard(dir.set, cfg.nodeId, shardOpts(cfg)).data;
  } else {
    const split = loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed });
    data = nodeShard(split.train, cfg.nodeId, shardOpts(cfg)).data;
  }
  if (cfg.data.maxTrainSamples > 0 && data.count > cfg.data.maxTrainSamples) {
    data = subset(data, Array.from({ length: cfg.data.maxTrainSamples }, (_, i) => i));
  }
  return { shard: data, histogram: labelHistogram(data.labels, Math.max(data.numClasses, spec.classes)), skipped, source };
}

/** The trainer's loader per run model: a directory that cannot be read fails the round with a 422 naming it. */
export function nodeDataFor(cfg: Config): (spec: ModelSpec) => { set: ImageSet; skipped: number; source: string } {
  return (spec) => {
    try {
      const { shard, skipped, source } = loadNodeShard(cfg, spec);
      return { set: shard, skipped, source };
    } catch (e) {
      if (e instanceof NodeDataError) throw new HttpError(422, 'node_data_unreadable', e.message);
      throw e;
    }
  };
}

/** The held-out set the aggregator evaluates on (never a node's data): EDGEFL_EVAL_DATA, else the dataset's test split. */
export function loadHeldOut(cfg: Config, spec: ModelSpec = REFERENCE_CNN): ImageSet {
  if (cfg.evalData) return loadNodeDir(cfg.evalData, spec.inputShape).set;
  return loadDataset({ dataset: cfg.data.dataset, idxDir: cfg.data.idxDir, testSize: cfg.data.testSize, seed: cfg.data.seed }).test;
}

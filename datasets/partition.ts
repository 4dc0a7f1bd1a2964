import { createRng, dirichlet, shuffled, type Rng } from './rng.js';
import { labelHistogram } from './types.js';

/** none: no split at all; every node's data is all its own (node-local data, EDGEFL_NODE_DATA). */
export type PartitionKind = 'iid' | 'dirichlet' | 'shards' | 'none';
export const PARTITION_KINDS: readonly PartitionKind[] = ['iid', 'dirichlet', 'shards', 'none'];

export interface PartitionOptions {
  kind: PartitionKind;
  nodes: number;
  seed: number;
  /** Dirichlet concentration; smaller is more skewed. */
  alpha?: number;
  /** Dirichlet: resample until every node holds at least this many samples. */
  minShardSize?: number;
  /** Shards: shards per node, as in McMahan et al. 2017; a node holds at most this many classes. */
  shardsPerNode?: number;
}

export interface NodeShard {
  indices: Uint32Array;
  histogram: number[];
}

export function partition(labels: Uint8Array, numClasses: number, opts: PartitionOptions): NodeShard[] {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new Error(`nodes must be a positive integer, got ${opts.nodes}`);
  if (opts.nodes > labels.length) throw new Error(`cannot split ${labels.length} samples across ${opts.nodes} nodes`);
  const rng = createRng(opts.seed);
  let groups: number[][];
  switch (opts.kind) {
    case 'iid':
      groups = iid(labels.length, opts.nodes, rng);
      break;
    case 'none':
      groups = Array.from({ length: opts.nodes }, () => Array.from({ length: labels.length }, (_, i) => i));
      break;
    case 'dirichlet':
      groups = dirichletSplit(labels, numClasses, opts.nodes, opts.alpha ?? 0.5, opts.minShardSize ?? 10, rng);
      break;
    case 'shards':
      groups = shardSplit(labels, numClasses, opts.nodes, opts.shardsPerNode ?? 2, rng);
      break;
    default:
      throw new Error(`unknown partition '${String(opts.kind)}', expected one of ${PARTITION_KINDS.join(', ')}`);
  }
  return groups.map((g) => {
    const indices = Uint32Array.from(g).sort();
    return { indices, histogram: labelHistogram(Array.from(indices, (i) => labels[i]!), numClasses) };
  });
}

function iid(count: number, nodes: number, rng: Rng): number[][] {
  const order = shuffled(
    Array.from({ length: count }, (_, i) => i),
    rng,
  );
  return Array.from({ length: nodes }, (_, n) => order.filter((_, i) => i % nodes === n));
}

function indicesByClass(labels: Uint8Array, numClasses: number): number[][] {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((l, i) => byClass[l]!.push(i));
  return byClass;
}

/**
 * Per class, draws node proportions from Dir(alpha) and cuts that class's samples
 * accordingly (Hsu et al. 2019). Resamples until every node has minShardSize samples,
 * which small alphas otherwise violate often.
 */
function dirichletSplit(labels: Uint8Array, numClasses: number, nodes: number, alpha: number, minShardSize: number, rng: Rng): number[][] {
  if (!(alpha > 0)) throw new Error(`alpha must be > 0, got ${alpha}`);
  if (minShardSize * nodes > labels.length) throw new Error(`minShardSize ${minShardSize} x ${nodes} nodes exceeds ${labels.length} samples`);
  const byClass = indicesByClass(labels, numClasses).map((c) => shuffled(c, rng));
  for (let attempt = 0; attempt < 1000; attempt++) {
    const groups: number[][] = Array.from({ length: nodes }, () => []);
    for (const members of byClass) {
      const p = dirichlet(alpha, nodes, rng);
      let start = 0;
      let cum = 0;
      for (let n = 0; n < nodes; n++) {
        cum += p[n]!;
        const end = n === nodes - 1 ? members.length : Math.round(cum * members.length);
        groups[n]!.push(...members.slice(start, end));
        start = end;
      }
    }
    if (groups.every((g) => g.length >= minShardSize)) return groups;
  }
  throw new Error(`could not draw a Dirichlet(alpha=${alpha}) partition with >= ${minShardSize} samples per node; lower minShardSize or raise alpha`);
}

/**
 * McMahan et al. 2017 with class-pure shards: each class's samples are cut into
 * shards (nodes*k in all, one per class first, the rest to whichever class has the
 * largest shards, so shard sizes stay even), then each node is dealt k random shards.
 * A node therefore holds at most k classes and every sample is dealt, which needs at
 * least as many shards as there are classes present.
 */
function shardSplit(labels: Uint8Array, numClasses: number, nodes: number, k: number, rng: Rng): number[][] {
  if (!Number.isInteger(k) || k < 1) throw new Error(`shardsPerNode must be a positive integer, got ${k}`);
  const total = nodes * k;
  if (total > labels.length) throw new Error(`${total} shards exceed ${labels.length} samples`);
  const byClass = indicesByClass(labels, numClasses).filter((c) => c.length > 0);
  if (total < byClass.length) {
    throw new Error(
      `${nodes} nodes x ${k} shards per node = ${total} shards cannot cover the ${byClass.length} classes present with at most ${k} classes per node; raise shardsPerNode or use dirichlet`,
    );
  }
  const counts = byClass.map(() => 1);
  for (let s = byClass.length; s < total; s++) {
    let best = 0;
    for (let c = 1; c < byClass.length; c++) if (byClass[c]!.length / counts[c]! > byClass[best]!.length / counts[best]!) best = c;
    counts[best]!++;
  }
  const shards = byClass.flatMap((members, c) => {
    const n = counts[c]!;
    return Array.from({ length: n }, (_, i) => members.slice(Math.floor((i * members.length) / n), Math.floor(((i + 1) * members.length) / n)));
  });
  const dealt = shuffled(shards, rng);
  return Array.from({ length: nodes }, (_, n) => dealt.slice(n * k, (n + 1) * k).flat());
}

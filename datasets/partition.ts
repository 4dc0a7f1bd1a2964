import { createRng, dirichlet, shuffled, type Rng } from './rng.js';
import { labelHistogram } from './types.js';

export type PartitionKind = 'iid' | 'dirichlet' | 'shards';
export const PARTITION_KINDS: readonly PartitionKind[] = ['iid', 'dirichlet', 'shards'];

export interface PartitionOptions {
  kind: PartitionKind;
  nodes: number;
  seed: number;
  /** Dirichlet concentration; smaller is more skewed. */
  alpha?: number;
  /** Dirichlet: resample until every node holds at least this many samples. */
  minShardSize?: number;
  /** Shards: classes (shards) per node, as in McMahan et al. 2017. */
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
    case 'dirichlet':
      groups = dirichletSplit(labels, numClasses, opts.nodes, opts.alpha ?? 0.5, opts.minShardSize ?? 10, rng);
      break;
    case 'shards':
      groups = shardSplit(labels, opts.nodes, opts.shardsPerNode ?? 2, rng);
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

/** Sort by label, cut into nodes*k equal shards, deal k random shards to each node. */
function shardSplit(labels: Uint8Array, nodes: number, k: number, rng: Rng): number[][] {
  if (!Number.isInteger(k) || k < 1) throw new Error(`shardsPerNode must be a positive integer, got ${k}`);
  const total = nodes * k;
  if (total > labels.length) throw new Error(`${total} shards exceed ${labels.length} samples`);
  const sorted = Array.from({ length: labels.length }, (_, i) => i).sort((a, b) => labels[a]! - labels[b]! || a - b);
  const shardSize = Math.floor(labels.length / total);
  const shardOrder = shuffled(
    Array.from({ length: total }, (_, i) => i),
    rng,
  );
  return Array.from({ length: nodes }, (_, n) =>
    shardOrder.slice(n * k, (n + 1) * k).flatMap((s) => sorted.slice(s * shardSize, s === total - 1 ? labels.length : (s + 1) * shardSize)),
  );
}

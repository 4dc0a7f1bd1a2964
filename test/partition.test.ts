import { describe, it, expect } from 'vitest';
import { partition, type NodeShard, type PartitionOptions } from '../datasets/partition.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { loadDataset, nodeShard } from '../datasets/index.js';
import { createRng, dirichlet, gamma, shuffled } from '../datasets/rng.js';
import { labelHistogram } from '../datasets/types.js';

const train = builtinMnistSplit().train;
const labels = train.labels;

/** Balanced synthetic labels: perClass samples of each of k classes, interleaved. */
function balanced(k: number, perClass: number): Uint8Array {
  return Uint8Array.from({ length: k * perClass }, (_, i) => i % k);
}

/** Every index appears in exactly one shard, and each shard is sorted and in range. */
function expectDisjointCover(shards: NodeShard[], count: number): void {
  const seen = new Uint8Array(count);
  for (const s of shards) {
    expect(s.indices).toBeInstanceOf(Uint32Array);
    for (let i = 0; i < s.indices.length; i++) {
      const idx = s.indices[i]!;
      expect(idx).toBeLessThan(count);
      if (i > 0) expect(idx).toBeGreaterThan(s.indices[i - 1]!);
      seen[idx]!++;
    }
  }
  expect(seen.every((v) => v === 1)).toBe(true);
}

function expectHistogramsMatch(shards: NodeShard[], lbl: Uint8Array, numClasses: number): void {
  for (const s of shards) {
    expect(s.histogram).toEqual(labelHistogram(Array.from(s.indices, (i) => lbl[i]!), numClasses));
    expect(s.histogram.reduce((a, b) => a + b, 0)).toBe(s.indices.length);
  }
}

function same(a: NodeShard[], b: NodeShard[]): boolean {
  return a.length === b.length && a.every((s, n) => s.indices.length === b[n]!.indices.length && s.indices.every((v, i) => v === b[n]!.indices[i]));
}

/** Mean over nodes of the largest single class's share of that node's data. */
function meanMaxShare(shards: NodeShard[]): number {
  return shards.reduce((acc, s) => acc + Math.max(...s.histogram) / s.indices.length, 0) / shards.length;
}

const classesHeld = (s: NodeShard) => s.histogram.filter((c) => c > 0).length;

describe('rng helpers', () => {
  it('createRng is deterministic, seed-dependent and in [0, 1)', () => {
    const a = createRng(5);
    const b = createRng(5);
    const c = createRng(6);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c())).not.toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });

  it('shuffled permutes a copy', () => {
    const items = Array.from({ length: 50 }, (_, i) => i);
    const out = shuffled(items, createRng(1));
    expect(items).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(out).not.toEqual(items);
    expect([...out].sort((x, y) => x - y)).toEqual(items);
  });

  it('gamma has mean ≈ shape, above and below 1', () => {
    const rng = createRng(9);
    for (const shape of [0.3, 2.5]) {
      const n = 20000;
      let sum = 0;
      for (let i = 0; i < n; i++) sum += gamma(shape, rng);
      expect(Math.abs(sum / n - shape)).toBeLessThan(0.05 * Math.max(1, shape));
    }
  });

  it('dirichlet draws are proportions even when alpha is tiny enough to underflow every gamma draw', () => {
    const rng = createRng(3);
    for (const alpha of [1e-3, 0.5, 10]) {
      for (let t = 0; t < 200; t++) {
        const p = dirichlet(alpha, 2, rng);
        expect(p.every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
        expect(p[0]! + p[1]!).toBeCloseTo(1, 10);
      }
    }
  });
});

describe('partition: iid', () => {
  const opts: PartitionOptions = { kind: 'iid', nodes: 7, seed: 11 };
  const shards = partition(labels, 10, opts);

  it('covers every sample exactly once with sizes within one of each other', () => {
    expect(shards).toHaveLength(7);
    expectDisjointCover(shards, labels.length);
    const sizes = shards.map((s) => s.indices.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  });

  it('reports histograms equal to a recount, each close to the global mix', () => {
    expectHistogramsMatch(shards, labels, 10);
    const global = labelHistogram(labels, 10).map((c) => c / labels.length);
    for (const s of shards) s.histogram.forEach((c, k) => expect(Math.abs(c / s.indices.length - global[k]!)).toBeLessThan(0.04));
  });

  it('is deterministic for a seed and differs across seeds', () => {
    expect(same(partition(labels, 10, opts), shards)).toBe(true);
    expect(same(partition(labels, 10, { ...opts, seed: 12 }), shards)).toBe(false);
  });

  it('works with one node and with as many nodes as samples', () => {
    const lbl = balanced(3, 4);
    const one = partition(lbl, 3, { kind: 'iid', nodes: 1, seed: 1 });
    expect([...one[0]!.indices]).toEqual(Array.from({ length: 12 }, (_, i) => i));
    const each = partition(lbl, 3, { kind: 'iid', nodes: 12, seed: 1 });
    expectDisjointCover(each, 12);
    expect(each.every((s) => s.indices.length === 1)).toBe(true);
  });
});

describe('partition: dirichlet', () => {
  const base: PartitionOptions = { kind: 'dirichlet', nodes: 10, seed: 5, minShardSize: 0 };

  it('covers every sample exactly once with correct histograms', () => {
    const shards = partition(labels, 10, { ...base, alpha: 0.5 });
    expect(shards).toHaveLength(10);
    expectDisjointCover(shards, labels.length);
    expectHistogramsMatch(shards, labels, 10);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = partition(labels, 10, { ...base, alpha: 0.5 });
    expect(same(partition(labels, 10, { ...base, alpha: 0.5 }), a)).toBe(true);
    expect(same(partition(labels, 10, { ...base, alpha: 0.5, seed: 6 }), a)).toBe(false);
  });

  it('gets more skewed as alpha shrinks', () => {
    const share = (alpha: number) => {
      let s = 0;
      for (const seed of [1, 2, 3]) s += meanMaxShare(partition(labels, 10, { ...base, alpha, seed }));
      return s / 3;
    };
    const tiny = share(0.05);
    const mid = share(1);
    const flat = share(100);
    expect(tiny).toBeGreaterThan(mid);
    expect(mid).toBeGreaterThan(flat);
    // near-IID at alpha=100: the biggest class is barely above 1/10
    expect(flat).toBeLessThan(0.2);
    // near one-class-per-node at alpha=0.05
    expect(tiny).toBeGreaterThan(0.6);
  });

  it('honours minShardSize, resampling where a plain draw would leave nodes short', () => {
    const opts = { ...base, nodes: 20, alpha: 0.1, seed: 2 };
    const unconstrained = partition(labels, 10, opts);
    // at alpha=0.1 with 20 nodes some node gets little: the constraint below is not vacuous
    expect(Math.min(...unconstrained.map((s) => s.indices.length))).toBeLessThan(100);
    const constrained = partition(labels, 10, { ...opts, minShardSize: 100 });
    expect(Math.min(...constrained.map((s) => s.indices.length))).toBeGreaterThanOrEqual(100);
    expectDisjointCover(constrained, labels.length);
  });

  it('defaults to alpha 0.5 and minShardSize 10', () => {
    const shards = partition(labels, 10, { kind: 'dirichlet', nodes: 10, seed: 5 });
    expect(same(shards, partition(labels, 10, { kind: 'dirichlet', nodes: 10, seed: 5, alpha: 0.5, minShardSize: 10 }))).toBe(true);
    expect(shards.every((s) => s.indices.length >= 10)).toBe(true);
  });

  it('rejects alpha <= 0 or NaN, and minShardSize it cannot meet', () => {
    expect(() => partition(labels, 10, { ...base, alpha: 0 })).toThrow(/alpha must be > 0, got 0/);
    expect(() => partition(labels, 10, { ...base, alpha: -1 })).toThrow(/alpha must be > 0/);
    expect(() => partition(labels, 10, { ...base, alpha: NaN })).toThrow(/alpha must be > 0/);
    expect(() => partition(labels, 10, { ...base, alpha: 0.5, minShardSize: 801 })).toThrow(/minShardSize 801 x 10 nodes exceeds 8000 samples/);
    // possible on paper (5 x 20 = 100) but Dirichlet(0.01) puts each of the 4 classes (almost)
    // wholly on one node, so some node of 5 is left (nearly) empty in every draw
    expect(() => partition(balanced(4, 25), 4, { kind: 'dirichlet', nodes: 5, seed: 1, alpha: 0.01, minShardSize: 20 })).toThrow(
      /could not draw a Dirichlet\(alpha=0\.01\) partition with >= 20 samples per node/,
    );
  });
});

describe('partition: shards', () => {
  it('gives each node at most k classes and covers every sample once', () => {
    for (const [nodes, k] of [
      [3, 4],
      [5, 2],
      [20, 2],
      [10, 1],
      [7, 3],
    ] as const) {
      const shards = partition(labels, 10, { kind: 'shards', nodes, seed: 4, shardsPerNode: k });
      expect(shards).toHaveLength(nodes);
      expectDisjointCover(shards, labels.length);
      expectHistogramsMatch(shards, labels, 10);
      for (const s of shards) {
        expect(s.indices.length).toBeGreaterThan(0);
        expect(classesHeld(s)).toBeLessThanOrEqual(k);
      }
    }
  });

  it('deals shards of even size: node sizes stay near the mean', () => {
    const shards = partition(labels, 10, { kind: 'shards', nodes: 20, seed: 4, shardsPerNode: 2 });
    const mean = labels.length / 20;
    for (const s of shards) {
      expect(s.indices.length).toBeGreaterThan(0.75 * mean);
      expect(s.indices.length).toBeLessThan(1.25 * mean);
    }
  });

  it('is much more skewed than iid', () => {
    const shards = partition(labels, 10, { kind: 'shards', nodes: 10, seed: 4, shardsPerNode: 2 });
    const iid = partition(labels, 10, { kind: 'iid', nodes: 10, seed: 4 });
    expect(meanMaxShare(shards)).toBeGreaterThan(0.45);
    expect(meanMaxShare(iid)).toBeLessThan(0.2);
  });

  it('ignores classes with no samples', () => {
    const lbl = Uint8Array.from({ length: 60 }, (_, i) => [2, 5, 7][i % 3]!);
    const shards = partition(lbl, 10, { kind: 'shards', nodes: 3, seed: 1, shardsPerNode: 1 });
    expectDisjointCover(shards, 60);
    expect(shards.map(classesHeld)).toEqual([1, 1, 1]);
    expect(shards.map((s) => s.indices.length)).toEqual([20, 20, 20]);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const opts: PartitionOptions = { kind: 'shards', nodes: 10, seed: 8, shardsPerNode: 2 };
    const a = partition(labels, 10, opts);
    expect(same(partition(labels, 10, opts), a)).toBe(true);
    expect(same(partition(labels, 10, { ...opts, seed: 9 }), a)).toBe(false);
  });

  it('rejects bad shard counts with clear errors', () => {
    expect(() => partition(labels, 10, { kind: 'shards', nodes: 3, seed: 1, shardsPerNode: 0 })).toThrow(/shardsPerNode must be a positive integer, got 0/);
    expect(() => partition(labels, 10, { kind: 'shards', nodes: 3, seed: 1, shardsPerNode: 1.5 })).toThrow(/shardsPerNode must be a positive integer/);
    expect(() => partition(balanced(2, 3), 2, { kind: 'shards', nodes: 4, seed: 1, shardsPerNode: 2 })).toThrow(/8 shards exceed 6 samples/);
    // 3 x 2 shards cannot reach 10 classes without some node holding more than 2
    expect(() => partition(labels, 10, { kind: 'shards', nodes: 3, seed: 1, shardsPerNode: 2 })).toThrow(/6 shards cannot cover the 10 classes/);
  });
});

describe('partition: option validation', () => {
  for (const kind of ['iid', 'dirichlet', 'shards'] as const) {
    it(`${kind}: rejects nodes that are zero, negative, fractional or more than the samples`, () => {
      expect(() => partition(labels, 10, { kind, nodes: 0, seed: 1 })).toThrow(/nodes must be a positive integer, got 0/);
      expect(() => partition(labels, 10, { kind, nodes: -2, seed: 1 })).toThrow(/nodes must be a positive integer/);
      expect(() => partition(labels, 10, { kind, nodes: 2.5, seed: 1 })).toThrow(/nodes must be a positive integer/);
      expect(() => partition(balanced(2, 2), 2, { kind, nodes: 5, seed: 1 })).toThrow(/cannot split 4 samples across 5 nodes/);
    });
  }

  it('rejects an unknown kind, listing the known ones', () => {
    expect(() => partition(labels, 10, { kind: 'zipf' as never, nodes: 2, seed: 1 })).toThrow(/unknown partition 'zipf', expected one of iid, dirichlet, shards/);
  });
});

describe('datasets/index', () => {
  it('nodeShard returns exactly the node’s partition, as data', () => {
    const opts: PartitionOptions = { kind: 'dirichlet', nodes: 4, seed: 3, alpha: 0.3 };
    const all = partition(train.labels, 10, opts);
    for (let node = 0; node < 4; node++) {
      const { data, shard } = nodeShard(train, node, opts);
      expect([...shard.indices]).toEqual([...all[node]!.indices]);
      expect(data.count).toBe(shard.indices.length);
      expect(labelHistogram(data.labels, 10)).toEqual(shard.histogram);
      const probe = shard.indices.length >> 1;
      const src = shard.indices[probe]!;
      expect(data.images.subarray(probe * 784, (probe + 1) * 784)).toEqual(train.images.subarray(src * 784, (src + 1) * 784));
    }
  });

  it('nodeShard rejects node ids outside 0..nodes-1', () => {
    const opts: PartitionOptions = { kind: 'iid', nodes: 3, seed: 1 };
    expect(() => nodeShard(train, 3, opts)).toThrow(/node id 3 is outside 0\.\.2/);
    expect(() => nodeShard(train, -1, opts)).toThrow(/outside/);
    expect(() => nodeShard(train, 0.5, opts)).toThrow(/outside/);
  });

  it('loadDataset validates its options', () => {
    expect(() => loadDataset({ dataset: 'idx' })).toThrow(/needs an IDX directory/);
    expect(() => loadDataset({ dataset: 'cifar' as never })).toThrow(/unknown dataset 'cifar'/);
    const split = loadDataset({ dataset: 'mnist', testSize: 1000, seed: 1 });
    expect(split.test.count).toBe(1000);
  });
});

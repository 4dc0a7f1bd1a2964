import { describe, expect, it } from 'vitest';
import { createUpdateBuffer, stalenessOf, stalenessWeight } from '../aggregator/async/buffer.js';
import { cooldownMs, freeNodes, nextFreeAt, pickNode } from '../aggregator/async/schedule.js';
import { summarise } from '../services/store/async-updates.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { createStrategy } from '../aggregator/strategies.js';

const v = (...xs: number[]) => Float32Array.from(xs);

describe('FedBuff buffer (pure)', () => {
  it('weights an update τ aggregations stale by (1+τ)^-a: 1/√(1+τ) by default, 1 for a = 0', () => {
    expect(stalenessWeight(0, 0.5)).toBe(1);
    expect(stalenessWeight(3, 0.5)).toBeCloseTo(0.5, 12);
    expect(stalenessWeight(8, 0.5)).toBeCloseTo(1 / 3, 12);
    expect(stalenessWeight(5, 0)).toBe(1);
    expect(() => stalenessWeight(-1, 0.5)).toThrow(/non-negative/);
    expect(stalenessOf(2, 5)).toBe(3);
    expect(stalenessOf(5, 5)).toBe(0);
  });

  it('with every update fresh and η = 1 the step is FedAvg’s sample-weighted mean', () => {
    const global = v(1, 1);
    const buffer = createUpdateBuffer(2, (t) => stalenessWeight(t, 0.5));
    buffer.add({ weights: v(2, 0), base: global, samples: 1, staleness: 0 });
    buffer.add({ weights: v(5, 3), base: global, samples: 3, staleness: 0 });
    // (1·2 + 3·5)/4 = 4.25, (1·0 + 3·3)/4 = 2.25
    expect(Array.from(buffer.apply(global, 1))).toEqual([4.25, 2.25]);
    expect(buffer.size).toBe(2);
  });

  it('takes each delta from the update’s own base, shrinks stale ones, and scales by the server learning rate', () => {
    const oldBase = v(0, 0);
    const global = v(10, 10);
    const buffer = createUpdateBuffer(2, (t) => stalenessWeight(t, 0.5));
    // Trained from an old version (3 aggregations behind): its delta is (+4, −2) from THAT version, weight 1/2.
    buffer.add({ weights: v(4, -2), base: oldBase, samples: 1, staleness: 3 });
    buffer.add({ weights: v(12, 10), base: global, samples: 1, staleness: 0 });
    // Σ (n/N)·s·Δ = ½·½·(4, −2) + ½·1·(2, 0) = (1, −0.5) + (1, 0) = (2, −0.5)
    expect(Array.from(buffer.apply(global, 1))).toEqual([12, 9.5]);
    expect(Array.from(buffer.apply(global, 0.5))).toEqual([11, 9.75]);
    expect(buffer.staleness).toEqual([3, 0]);
  });

  it('refuses an empty buffer, a wrong length and a non-positive sample count', () => {
    const buffer = createUpdateBuffer(2, () => 1);
    expect(() => buffer.apply(v(0, 0), 1)).toThrow(/no updates/);
    expect(() => buffer.add({ weights: v(1), base: v(0, 0), samples: 1, staleness: 0 })).toThrow(/expected 2/);
    expect(() => buffer.add({ weights: v(1, 1), base: v(0, 0), samples: 0, staleness: 0 })).toThrow(/positive/);
  });
});

describe('async schedule (pure)', () => {
  const nodes = ['a', 'b', 'c', 'd'];

  it('picks only free nodes, reproducibly from the seed and invocation number', () => {
    const state = { busy: new Set(['a']), coolingUntil: new Map([['b', 2000]]) };
    expect(freeNodes(nodes, state, 1000)).toEqual(['c', 'd']);
    expect(freeNodes(nodes, state, 2000)).toEqual(['b', 'c', 'd']);
    const picks = Array.from({ length: 40 }, (_, i) => pickNode(nodes, state, 1000, 7, i));
    expect(new Set(picks)).toEqual(new Set(['c', 'd']));
    expect(Array.from({ length: 40 }, (_, i) => pickNode(nodes, state, 1000, 7, i))).toEqual(picks);
    expect(pickNode(nodes, { busy: new Set(nodes), coolingUntil: new Map() }, 0, 1, 1)).toBeUndefined();
  });

  it('cools a failing node down 1, 2, 4 … s up to 30 s, and says when the first cooling node is free', () => {
    expect([1, 2, 3, 4, 10].map(cooldownMs)).toEqual([1000, 2000, 4000, 8000, 30_000]);
    const state = { busy: new Set(['c']), coolingUntil: new Map([['a', 5000], ['b', 3000], ['c', 1500]]) };
    expect(nextFreeAt(nodes, state, 1000)).toBe(3000);
    expect(nextFreeAt(nodes, state, 6000)).toBeUndefined();
  });
});

describe('fedbuff run config', () => {
  it('is a registered strategy with the paper’s weighting and the async settings from the run schema', () => {
    const config = parseRunConfig({ strategy: 'fedbuff', bufferSize: 4, concurrency: 2, maxStaleness: 1 });
    const strategy = createStrategy(config.strategy, config);
    expect(strategy.async).toMatchObject({ bufferSize: 4, concurrency: 2, maxStaleness: 1, serverLearningRate: 1 });
    expect(strategy.async!.weight(3)).toBeCloseTo(0.5, 12);
    expect(parseRunConfig({})).toMatchObject({ bufferSize: 3, concurrency: null, maxStaleness: 10, stalenessExponent: 0.5 });
    expect(createStrategy('fedavg', parseRunConfig({})).async).toBeUndefined();
  });

  it('refuses bad async settings with a 400 naming the field', () => {
    for (const [body, field] of [[{ bufferSize: 0 }, 'bufferSize'], [{ concurrency: 1.5 }, 'concurrency'], [{ maxStaleness: -1 }, 'maxStaleness'], [{ stalenessExponent: 'x' }, 'stalenessExponent']] as const) {
      expect(() => parseRunConfig({ strategy: 'fedbuff', ...body })).toThrow(expect.objectContaining({ status: 400, message: expect.stringContaining(`'${field}'`) }));
    }
  });
});

describe('async summary (pure)', () => {
  it('counts by status, histograms staleness over arrivals and averages it over aggregated updates', () => {
    const s = summarise([
      { status: 'aggregated', staleness: 0, n: 3 },
      { status: 'aggregated', staleness: 2, n: 1 },
      { status: 'stale', staleness: 5, n: 2 },
      { status: 'failed', staleness: null, n: 1 },
      { status: 'buffered', staleness: 2, n: 1 },
    ]);
    expect(s).toEqual({ invocations: 8, byStatus: { aggregated: 4, stale: 2, failed: 1, buffered: 1 }, stalenessHistogram: { 0: 3, 2: 2, 5: 2 }, meanStaleness: 0.5, discardedStale: 2 });
  });
});

import { describe, expect, it } from 'vitest';
import { clipToNorm, createStrategy, l2Distance, median, trimmedMean, trimmedMeanMinimum, weightedMean, type ScreenedUpdate, type StrategyConfig } from '../aggregator/strategies.js';
import { DEFAULT_RUN } from '../aggregator/run-config.js';
import { selectNodes } from '../aggregator/round/plan.js';

const f32 = (...v: number[]) => Float32Array.from(v);
const f64 = (...v: number[]) => Float64Array.from(v);
const close = (actual: Float32Array, expected: number[], digits = 5) => {
  expect(actual.length).toBe(expected.length);
  expected.forEach((e, i) => expect(actual[i]).toBeCloseTo(e, digits));
};

/** A strategy with the run defaults (the one place they live) overridden by `params`. */
const strategy = (name: Parameters<typeof createStrategy>[0], params: Partial<StrategyConfig> = {}) => createStrategy(name, { ...DEFAULT_RUN, ...params });

async function* stream(updates: [Float32Array, number][]): AsyncGenerator<ScreenedUpdate> {
  for (const [weights, samples] of updates) yield { nodeId: 'n', weights, samples };
}

function aggregate(name: Parameters<typeof createStrategy>[0], global: Float32Array, updates: [Float32Array, number][], params: Partial<StrategyConfig> = {}) {
  return strategy(name, params).aggregateFit(global, stream(updates));
}

/** The proximal weight a strategy sends the trainers. */
const muOf = (s: ReturnType<typeof createStrategy>) => s.configureFit(1, [{ nodeId: 'node-0', url: 'http://x' }])[0]!.config.proximalMu;

describe('FedAvg', () => {
  it('weights each update by its sample count (hand-computed)', async () => {
    // (1·[1,2] + 3·[3,4]) / 4 = [10/4, 14/4] = [2.5, 3.5]
    close(await aggregate('fedavg', f32(0, 0), [[f32(1, 2), 1], [f32(3, 4), 3]]), [2.5, 3.5]);
    // equal weights: plain mean; three updates: (2·[0,6] + 1·[3,0] + 1·[-3,2]) / 4 = [0, 14/4]
    close(await aggregate('fedavg', f32(9, 9), [[f32(0, 6), 2], [f32(3, 0), 1], [f32(-3, 2), 1]]), [0, 3.5]);
  });

  it('does not depend on the order updates arrive in', async () => {
    const ups: [Float32Array, number][] = [
      [f32(0.1, 1e6, -3.3), 7],
      [f32(0.2, 1e-6, 4.4), 11],
      [f32(-0.7, 123.456, 0), 1],
      [f32(5, -1e6, 2.2), 13],
    ];
    const a = await aggregate('fedavg', f32(0, 0, 0), ups);
    const b = await aggregate('fedavg', f32(0, 0, 0), [ups[3]!, ups[1]!, ups[0]!, ups[2]!]);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('refuses empty rounds, zero sample counts and mismatched lengths', () => {
    expect(() => weightedMean().result()).toThrow(/no updates/);
    expect(() => weightedMean().add(f32(1), 0)).toThrow(/positive sample count/);
    const agg = weightedMean();
    agg.add(f32(1, 2), 1);
    expect(() => agg.add(f32(1), 1)).toThrow(/expected 2/);
  });
});

describe('FedProx', () => {
  it('aggregates like FedAvg and sends mu to the trainers', async () => {
    expect(muOf(strategy('fedprox', { proximalMu: 0.05 }))).toBe(0.05);
    expect(muOf(strategy('fedprox'))).toBe(0.01);
    expect(muOf(strategy('fedavg'))).toBe(0);
    close(await aggregate('fedprox', f32(0, 0), [[f32(1, 2), 1], [f32(3, 4), 3]], { proximalMu: 0.05 }), [2.5, 3.5]);
  });
});

describe('FedAvgM', () => {
  const momentum = (p: Partial<StrategyConfig>) => strategy('fedavgm', p);
  it('applies server momentum across rounds (hand-computed)', async () => {
    // beta 0.5, server lr 1.
    const s = momentum({ serverMomentum: 0.5, serverLearningRate: 1 });
    // Round 1: global [1,1], avg [0,2]; g = global − avg = [1,−1]; v = [1,−1]; w = global − v = [0, 2].
    close(await s.aggregateFit(f32(1, 1), stream([[f32(0, 2), 1]])), [0, 2]);
    // Round 2: global [0,2], avg [−1,2] (mean of [−2,2] and [0,2]); g = [1,0]; v = 0.5·[1,−1] + [1,0] = [1.5,−0.5];
    // w = [0,2] − [1.5,−0.5] = [−1.5, 2.5].
    close(await s.aggregateFit(f32(0, 2), stream([[f32(-2, 2), 1], [f32(0, 2), 1]])), [-1.5, 2.5]);
  });

  it('carries its momentum across a resume through saveState/loadState', async () => {
    const first = momentum({ serverMomentum: 0.5, serverLearningRate: 1 });
    await first.aggregateFit(f32(1, 1), stream([[f32(0, 2), 1]]));
    const saved = first.saveState!()!;
    // A new aggregator process: fresh strategy, state from the store. Round 2 as in the test above.
    const resumed = momentum({ serverMomentum: 0.5, serverLearningRate: 1 });
    resumed.loadState!(Buffer.from(saved));
    close(await resumed.aggregateFit(f32(0, 2), stream([[f32(-2, 2), 1], [f32(0, 2), 1]])), [-1.5, 2.5]);
    // Without the state the step would have been plain FedAvg: [−1, 2].
    const fresh = momentum({ serverMomentum: 0.5, serverLearningRate: 1 });
    close(await fresh.aggregateFit(f32(0, 2), stream([[f32(-2, 2), 1], [f32(0, 2), 1]])), [-1, 2]);
    expect(strategy('fedavg').saveState).toBeUndefined();
  });

  it('with a server learning rate scales the step', async () => {
    // g = [2,−2]; w = [2,2] − 0.5·[2,−2] = [1, 3]
    close(await momentum({ serverMomentum: 0, serverLearningRate: 0.5 }).aggregateFit(f32(2, 2), stream([[f32(0, 4), 1]])), [1, 3]);
  });

  it('keeps its momentum when the update stream ends in an error (a round that missed its quorum)', async () => {
    const s = momentum({ serverMomentum: 0.5, serverLearningRate: 1 });
    await s.aggregateFit(f32(1, 1), stream([[f32(0, 2), 1]]));
    const before = Array.from(new Float32Array(Uint8Array.from(s.saveState!()!).buffer));
    async function* failing(): AsyncGenerator<ScreenedUpdate> {
      yield { nodeId: 'n', weights: f32(5, 5), samples: 1 };
      throw new Error('quorum not reached');
    }
    await expect(s.aggregateFit(f32(0, 2), failing())).rejects.toThrow(/quorum/);
    expect(Array.from(new Float32Array(Uint8Array.from(s.saveState!()!).buffer))).toEqual(before);
  });
});

describe('robust statistics', () => {
  it('median per coordinate (odd and even counts)', async () => {
    expect(median(f64(3, 1, 2))).toBe(2);
    expect(median(f64(4, 1, 3, 2))).toBe(2.5);
    expect(median(f64(-10, 100, 0.5))).toBe(0.5);
    // [1,10], [2,20], [300,-5] → coordinate medians [2, 10]
    close(await aggregate('median', f32(0, 0), [[f32(1, 10), 1], [f32(2, 20), 5], [f32(300, -5), 1]]), [2, 10]);
  });

  it('trimmed mean drops floor(trim·n) values at each end', async () => {
    // n = 5, trim 0.2 → cut 1: sorted [1,2,3,4,100] → mean(2,3,4) = 3
    expect(trimmedMean(f64(100, 1, 3, 2, 4), 0.2)).toBe(3);
    // n = 10, trim 0.2 → cut 2: [1..8,1000,−1000] sorted → drop −1000,1 and 8,1000 → mean(2..7) = 4.5
    expect(trimmedMean(f64(1, 2, 3, 4, 5, 6, 7, 8, 1000, -1000), 0.2)).toBe(4.5);
    // trim 0 is the mean; n = 3 with trim 0.34 is the median
    expect(trimmedMean(f64(1, 2, 6), 0)).toBe(3);
    expect(trimmedMean(f64(1, 2, 600), 0.34)).toBe(2);
    close(await aggregate('trimmed-mean', f32(0), [[f32(1), 1], [f32(2), 1], [f32(600), 1]], { trimFraction: 0.34 }), [2]);
    expect(() => strategy('trimmed-mean', { trimFraction: 0.5 })).toThrow(/trimFraction/);
  });

  it('a robust strategy states how many updates it needs to tolerate one bad one', () => {
    expect(strategy('median').minUpdates).toBe(3);
    // k = ⌊trim·n⌋ ≥ 1 per side: trim 0.34 → 3 (the default); 0.2 → 5; 0.1 → 10; trim 0 is never robust
    expect(strategy('trimmed-mean').minUpdates).toBe(3);
    expect(strategy('trimmed-mean', { trimFraction: 0.2 }).minUpdates).toBe(5);
    expect(trimmedMeanMinimum(0.1)).toBe(10);
    expect(trimmedMeanMinimum(0)).toBe(Infinity);
    for (const name of ['fedavg', 'fedprox', 'fedavgm'] as const) expect(strategy(name).minUpdates).toBe(1);
  });

  it('unknown strategies are refused', () => {
    expect(() => strategy('krum' as never)).toThrow(/unknown strategy/);
  });
});

describe('norm bound', () => {
  it('l2Distance and clipToNorm (hand-computed)', () => {
    const g = f32(1, 1);
    const u = f32(4, 5); // step [3,4], norm 5
    expect(l2Distance(u, g)).toBeCloseTo(5, 6);
    close(clipToNorm(u, g, 1), [1 + 0.6, 1 + 0.8]);
    expect(l2Distance(clipToNorm(u, g, 2.5), g)).toBeCloseTo(2.5, 5);
    // inside the bound: unchanged, same object
    expect(clipToNorm(u, g, 10)).toBe(u);
  });
});

describe('selectNodes', () => {
  const nodes = Array.from({ length: 10 }, (_, i) => `node-${i}`);
  it('is deterministic per (seed, round), keeps order and takes ceil(fraction·n)', () => {
    const a = selectNodes(nodes, 0.3, 7, 1);
    expect(a).toEqual(selectNodes(nodes, 0.3, 7, 1));
    expect(a).toHaveLength(3);
    expect(new Set(a).size).toBe(3);
    expect(a).toEqual([...a].sort((x, y) => Number(x.slice(5)) - Number(y.slice(5))));
    expect(selectNodes(nodes, 0.25, 7, 1)).toHaveLength(3);
    expect(selectNodes(nodes, 0.01, 7, 1)).toHaveLength(1);
    expect(selectNodes(nodes, 1, 7, 1)).toEqual(nodes);
    expect(selectNodes([], 0.5, 1, 1)).toEqual([]);
  });

  it('varies between rounds and covers every node over many rounds', () => {
    const picks = Array.from({ length: 40 }, (_, r) => selectNodes(nodes, 0.2, 3, r + 1).join(','));
    expect(new Set(picks).size).toBeGreaterThan(5);
    const seen = new Set(picks.flatMap((p) => p.split(',')));
    expect(seen.size).toBe(10);
  });
});

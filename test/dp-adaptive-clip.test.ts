import { describe, expect, it } from 'vitest';
import { nextClip, noisyUnclippedShare, updateNoiseMultiplier } from '../services/core/privacy/adaptive-clip.js';
import { parseDpConfig } from '../services/core/privacy/config.js';
import { dpFedAvgAggregate } from '../services/core/privacy/dp-fedavg.js';
import { dpFedAvg } from '../aggregator/dp-fedavg-strategy.js';
import { DEFAULT_RUN } from '../aggregator/run-config.js';
import { createRng } from '../datasets/rng.js';

const rule = { targetQuantile: 0.5, learningRate: 0.2 };

describe('adaptive clipping: the geometric update', () => {
  it('shrinks C when more than the target share fitted, grows it when fewer did, by exp(−η(b̄ − γ))', () => {
    expect(nextClip(1, 0.5, rule)).toBe(1);
    expect(nextClip(2, 1, rule)).toBeCloseTo(2 * Math.exp(-0.1), 12);
    expect(nextClip(2, 0, rule)).toBeCloseTo(2 * Math.exp(0.1), 12);
    expect(nextClip(1, 0.9, { targetQuantile: 0.9, learningRate: 5 })).toBe(1);
    expect(() => nextClip(0, 0.5, rule)).toThrow(/clip/);
  });

  it('without noise, C converges to the target quantile of a fixed set of update norms', () => {
    const norms = Array.from({ length: 100 }, (_, i) => (i + 1) / 10); // 0.1 .. 10: median 5.05
    for (const [gamma, want] of [[0.5, 5.05], [0.9, 9.05]] as const) {
      let clip = 0.1;
      for (let r = 0; r < 400; r++) clip = nextClip(clip, norms.filter((n) => n <= clip).length / norms.length, { targetQuantile: gamma, learningRate: 0.2 });
      expect(Math.abs(clip - want)).toBeLessThan(0.15);
    }
  });

  it('noises the count with std σ_b, in clients, over the clients chosen', () => {
    const rng = createRng(3);
    const draws = Array.from({ length: 20_000 }, () => noisyUnclippedShare(6, 10, 2, rng));
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    const std = Math.sqrt(draws.reduce((a, b) => a + (b - mean) ** 2, 0) / draws.length);
    expect(mean).toBeCloseTo(0.6, 2);
    expect(Math.abs(std / 0.2 - 1)).toBeLessThan(0.03);
  });
});

describe('adaptive clipping: the σ adjustment that keeps the client-level ε', () => {
  it('σ_Δ = (z⁻² − (2σ_b)⁻²)^−½: updates and bits together are one Gaussian of multiplier z', () => {
    const z = 1.2;
    const sb = 3;
    const sd = updateNoiseMultiplier(z, sb);
    expect(sd).toBeGreaterThan(z);
    expect((sd ** -2 + (2 * sb) ** -2) ** -0.5).toBeCloseTo(z, 12);
    // The paper's example: σ_b large against z leaves σ_Δ close to z.
    expect(updateNoiseMultiplier(1, 100)).toBeCloseTo(1, 4);
    expect(() => updateNoiseMultiplier(2, 1)).toThrow(/countNoiseMultiplier must exceed/);
  });

  it('the run config refuses bits that would cost more than the budgeted σ, and adaptive clipping outside central mode', () => {
    const ok = parseDpConfig({ mode: 'central', epsilonBudget: 5, noiseMultiplier: 1, adaptiveClip: { countNoiseMultiplier: 2 } })!;
    expect(ok.adaptiveClip).toEqual({ targetQuantile: 0.5, learningRate: 0.2, countNoiseMultiplier: 2 });
    expect(() => parseDpConfig({ mode: 'central', epsilonBudget: 5, noiseMultiplier: 1, adaptiveClip: { countNoiseMultiplier: 0.5 } })).toThrow(/dp\.adaptiveClip\.countNoiseMultiplier: must exceed/);
    expect(() => parseDpConfig({ mode: 'local', epsilonBudget: 5, noiseMultiplier: 1, adaptiveClip: { countNoiseMultiplier: 2 } })).toThrow(/dp\.adaptiveClip: adaptive clipping is for mode 'central'/);
    expect(() => parseDpConfig({ mode: 'central', epsilonBudget: 5, noiseMultiplier: 1, adaptiveClip: { countNoiseMultiplier: 2, targetQuantile: 1.5 } })).toThrow(/targetQuantile/);
  });
});

describe('dp-fedavg with adaptive clipping', () => {
  const D = 1000;
  const base = new Float32Array(D);
  const client = (norm: number) => Float32Array.from({ length: D }, () => norm / Math.sqrt(D));
  const aggregate = async (s: ReturnType<typeof dpFedAvg>, norms: number[]) => {
    const updates = norms.map((n, i) => ({ nodeId: `n${i}`, weights: client(n), samples: 1 }));
    return s.aggregateFit(base, (async function* () { yield* updates; })());
  };

  it('moves its clip towards the median update norm round after round, and saves and restores it', async () => {
    const dp = parseDpConfig({ mode: 'central', epsilonBudget: 50, noiseMultiplier: 0.5, clip: 0.1, adaptiveClip: { countNoiseMultiplier: 1, learningRate: 0.5 } })!;
    const s = dpFedAvg({ ...DEFAULT_RUN, strategy: 'dp-fedavg', dp });
    const targets = ['a', 'b', 'c', 'd', 'e'].map((nodeId) => ({ nodeId, url: `http://${nodeId}` }));
    const clips: number[] = [];
    for (let r = 1; r <= 40; r++) {
      s.configureFit(r, targets);
      await aggregate(s, [1, 2, 3, 4, 5]);
      clips.push((JSON.parse(s.saveState!()!.toString()) as { clip: number }).clip);
    }
    // Started at 0.1, far below every norm; the median is 3 (noise on the count keeps it moving).
    expect(Math.min(...clips.slice(-10))).toBeGreaterThan(0.5);
    const resumed = dpFedAvg({ ...DEFAULT_RUN, strategy: 'dp-fedavg', dp });
    resumed.loadState!(s.saveState!()!);
    expect(resumed.saveState!()!.toString()).toBe(s.saveState!()!.toString());
  });

  it('without adaptiveClip the clip stays dp.clip and there is no state', () => {
    const dp = parseDpConfig({ mode: 'central', epsilonBudget: 50, noiseMultiplier: 0.5, clip: 0.1 })!;
    expect(dpFedAvg({ ...DEFAULT_RUN, strategy: 'dp-fedavg', dp }).saveState!()).toBeUndefined();
    const r = dpFedAvgAggregate(base, [client(1), client(0.05)], { clip: 0.1, noiseMultiplier: 0, expectedClients: 2, rng: createRng(1) });
    expect(r.unclipped).toBe(1);
  });
});

import { describe, expect, it } from 'vitest';
import { clientLevelEpsilon, dpFedAvgAggregate, l2Norm } from '../services/core/privacy/dp-fedavg.js';
import { dpSgdEpsilon } from '../services/core/privacy/rdp.js';
import { createRng } from '../datasets/rng.js';

const D = 50_000;
const base = Float32Array.from({ length: D }, (_, i) => Math.sin(i));
const plus = (v: Float32Array, k: number, scale: number) => Float32Array.from(v, (x, i) => x + scale * Math.cos(i * k));

describe('DP-FedAvg aggregation', () => {
  it('without noise and within the clip it is the equal-weight average of the client models', () => {
    const a = plus(base, 1, 1e-4);
    const b = plus(base, 2, 1e-4);
    const r = dpFedAvgAggregate(base, [a, b], { clip: 10, noiseMultiplier: 0, expectedClients: 2, rng: createRng(1) });
    expect(r.clippedShare).toBe(0);
    for (let i = 0; i < D; i += 997) expect(r.weights[i]).toBeCloseTo((a[i]! + b[i]!) / 2, 5);
  });

  it('clipping bounds one client\'s influence on the aggregate by S / expected clients', () => {
    const S = 0.5;
    const honest = plus(base, 1, 1e-4);
    const huge = plus(base, 3, 1000); // a poisoned or extreme update
    const r = dpFedAvgAggregate(base, [honest, huge], { clip: S, noiseMultiplier: 0, expectedClients: 2, rng: createRng(1) });
    expect(r.clippedShare).toBe(0.5);
    const moved = l2Norm(Float32Array.from(r.weights, (w, i) => w - base[i]!));
    expect(moved).toBeLessThanOrEqual((S + l2Norm(Float32Array.from(honest, (w, i) => w - base[i]!))) / 2 + 1e-4);
  });

  it('adds noise of std σ·S / expected clients to every coordinate', () => {
    const o = { clip: 0.2, noiseMultiplier: 1.3, expectedClients: 3 };
    const r = dpFedAvgAggregate(base, [], { ...o, rng: createRng(7) });
    let s = 0;
    let sq = 0;
    for (let i = 0; i < D; i++) {
      const d = r.weights[i]! - base[i]!;
      s += d;
      sq += d * d;
    }
    const std = Math.sqrt(sq / D - (s / D) ** 2);
    const want = (o.noiseMultiplier * o.clip) / o.expectedClients;
    expect(Math.abs(std / want - 1)).toBeLessThan(0.02); // 50,000 draws: ~0.3% sampling error
  });
});

describe('client-level ε', () => {
  it('is the subsampled Gaussian composed over rounds; with every client in every round, no amplification', () => {
    const all = clientLevelEpsilon({ rounds: 10, participationRate: 1, noiseMultiplier: 2, delta: 1e-5 });
    expect(all).toBeCloseTo(dpSgdEpsilon({ samplingRate: 1, noiseMultiplier: 2, steps: 10, delta: 1e-5 }).epsilon, 9);
    expect(clientLevelEpsilon({ rounds: 10, participationRate: 0.1, noiseMultiplier: 2, delta: 1e-5 })).toBeLessThan(all / 3);
  });
});

import { describe, it, expect } from 'vitest';
import {
  DEFAULT_ORDERS,
  composeEvents,
  dpSgdEpsilon,
  epsilonFromRdp,
  epsilonFromRdpClassic,
  logErfc,
  noiseForEpsilon,
  rdpOneStep,
  rdpSubsampledGaussian,
} from '../services/core/privacy/rdp.js';

/**
 * Reference values are TensorFlow Privacy's own test expectations
 * (tensorflow_privacy/privacy/analysis/rdp_accountant_test.py and
 * compute_dp_sgd_privacy_test.py), which pin its accountant's output.
 */
describe('RDP of the subsampled Gaussian (TF Privacy reference values)', () => {
  it('q = 0 costs nothing; q = 1 is the plain Gaussian α/(2σ²)', () => {
    expect(rdpSubsampledGaussian(0, 10, 1, [20])).toEqual([0]);
    expect(rdpSubsampledGaussian(1, 10, 1, [20])[0]).toBeCloseTo(0.1, 12);
  });

  it('compute_rdp(q=0.1, σ=2, steps=10, α=5) = 0.07737', () => {
    expect(rdpSubsampledGaussian(0.1, 2, 10, [5])[0]).toBeCloseTo(0.07737, 5);
  });

  it('compute_rdp(q=0.01, σ=2.5, steps=50) over integer and fractional orders', () => {
    const got = rdpSubsampledGaussian(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, Infinity]);
    const want = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, Infinity];
    got.forEach((g, i) => {
      if (want[i] === Infinity) expect(g).toBe(Infinity);
      else expect(Math.abs(g - want[i]!)).toBeLessThan(1e-5);
    });
  });

  it('fractional orders interpolate smoothly between the integer neighbours', () => {
    const [a2, a25, a3] = [2, 2.5, 3].map((a) => rdpOneStep(0.05, 1.1, a));
    expect(a25).toBeGreaterThan(a2!);
    expect(a25).toBeLessThan(a3!);
  });
});

describe('RDP → (ε, δ)', () => {
  it('uses the tight conversion: constant RDP 1.1 on orders 2..32 gives ε = 1.32783806176 at α = 32', () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const r = epsilonFromRdp(orders, orders.map(() => 1.1), 1e-5);
    expect(r.order).toBe(32);
    expect(r.epsilon).toBeCloseTo(1.32783806176, 9);
    // The classic conversion is strictly looser on the same RDP curve.
    expect(epsilonFromRdpClassic(orders, orders.map(() => 1.1), 1e-5).epsilon).toBeGreaterThan(r.epsilon);
  });

  it('the Gaussian with σ = 4.530877117 is exactly (1, 1e-6)-DP on a fine order grid', () => {
    const orders = Array.from({ length: 99_000 }, (_, i) => 1 + 0.001 * i);
    const rdp = rdpSubsampledGaussian(1, 4.530877117, 1, orders.filter((a) => a > 1));
    expect(epsilonFromRdp(orders.filter((a) => a > 1), rdp, 1e-6).epsilon).toBeCloseTo(1, 6);
  });

  it('DP-SGD on 60,000 examples, batch 150, σ = 1.3, 15 epochs, δ = 1e-5: ε = 0.72422 at order 19', () => {
    const r = dpSgdEpsilon({ samplingRate: 150 / 60_000, noiseMultiplier: 1.3, steps: Math.ceil((15 * 60_000) / 150), delta: 1e-5 });
    expect(r.order).toBe(19);
    expect(Math.abs(r.epsilon - 0.7242234026109595)).toBeLessThan(1e-4);
  });

  it('DP-SGD on 100,000 examples, batch 100, σ = 1.0, 30 epochs, δ = 1e-7: ε = 1.41550 at order 13', () => {
    const r = dpSgdEpsilon({ samplingRate: 100 / 100_000, noiseMultiplier: 1.0, steps: Math.ceil((30 * 100_000) / 100), delta: 1e-7 });
    expect(r.order).toBe(13);
    expect(Math.abs(r.epsilon - 1.4154988495444842)).toBeLessThan(1e-4);
  });

  it('composing two rounds equals one run of their total steps, and ε grows with rounds', () => {
    const one = { samplingRate: 0.02, noiseMultiplier: 1.1, steps: 100 };
    const two = composeEvents([one, one]);
    const joint = rdpSubsampledGaussian(0.02, 1.1, 200);
    two.forEach((r, i) => expect(r).toBeCloseTo(joint[i]!, 9));
    expect(epsilonFromRdp(DEFAULT_ORDERS, two, 1e-5).epsilon).toBeGreaterThan(epsilonFromRdp(DEFAULT_ORDERS, composeEvents([one]), 1e-5).epsilon);
  });

  it('rejects δ outside (0, 1)', () => {
    expect(() => epsilonFromRdp([2], [1], 0)).toThrow(/delta/);
    expect(() => epsilonFromRdp([2], [1], 1)).toThrow(/delta/);
  });
});

describe('noiseForEpsilon (the inverse)', () => {
  it('finds the σ whose ε meets the target, and a slightly smaller σ overshoots it', () => {
    const p = { samplingRate: 256 / 60_000, steps: Math.ceil((60 * 60_000) / 256), delta: 1e-5 };
    for (const target of [1, 3, 8]) {
      const sigma = noiseForEpsilon({ ...p, targetEpsilon: target });
      expect(dpSgdEpsilon({ ...p, noiseMultiplier: sigma }).epsilon).toBeLessThanOrEqual(target);
      expect(dpSgdEpsilon({ ...p, noiseMultiplier: sigma * 0.99 }).epsilon).toBeGreaterThan(target);
    }
  });
});

describe('logErfc', () => {
  it('matches erfc where it is representable and stays finite where it underflows', () => {
    expect(Math.exp(logErfc(0))).toBeCloseTo(1, 6);
    expect(Math.exp(logErfc(1))).toBeCloseTo(0.157299207, 6);
    expect(Math.exp(logErfc(-1))).toBeCloseTo(1.842700793, 6);
    // erfc(30) underflows a double; its log does not. Asymptotically
    // log erfc(x) = −x² − log(x·√π) + log(1 − 1/(2x²) + …) = −903.9741 at x = 30.
    expect(logErfc(30)).toBeCloseTo(-903.9741, 3);
  });
});

/**
 * Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism (Mironov, Talwar &
 * Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"), the
 * mechanism behind DP-SGD and DP-FedAvg. Everything is computed in log space because the
 * terms reach e^±1000 at large orders. Pure: no tfjs, no I/O.
 *
 * Conventions: q is the per-step sampling probability, sigma the noise multiplier (noise
 * std / L2 sensitivity), add-or-remove-one neighbouring datasets.
 */

/**
 * Orders the accountant optimises over: the set TF Privacy's compute_dp_sgd_privacy uses
 * (fine fractional orders near 1 for large ε, integers up to 63 and a few large ones for
 * small ε).
 */
export const DEFAULT_ORDERS: readonly number[] = [
  1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5,
  ...Array.from({ length: 59 }, (_, i) => i + 5),
  128, 256, 512,
];

/** log(e^a + e^b) without overflow. */
export function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b);
  const lo = Math.min(a, b);
  if (lo === -Infinity) return hi;
  return hi + Math.log1p(Math.exp(lo - hi));
}

/** log(e^a − e^b) for a ≥ b. */
export function logSub(a: number, b: number): number {
  if (a < b) throw new Error('logSub: the result would be negative');
  if (b === -Infinity) return a;
  if (a === b) return -Infinity;
  const d = a - b;
  // Past ~700, expm1 overflows while the answer is a to within float precision.
  return d > 700 ? a : Math.log(Math.expm1(d)) + b;
}

/**
 * log(erfc(x)) for every real x, finite even where erfc(x) underflows (x ≳ 27). Uses the
 * Chebyshev fit of Numerical Recipes (erfc relative error < 1.2e-7), whose form
 * t·exp(poly) gives the logarithm directly.
 */
export function logErfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -z * z - 1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
    t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const logErfcAbs = Math.log(t) + poly;
  return x >= 0 ? logErfcAbs : Math.log(2 - Math.exp(logErfcAbs));
}

/** log A_α for integer α: a binomial expansion of E[(μ/μ0)^α], all terms positive. */
function logAInteger(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  let logBinom = 0; // log C(alpha, i), updated incrementally
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i);
    const term = logBinom + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, term);
  }
  return logA;
}

/**
 * log A_α for fractional α (Mironov et al. 2019, §3.3): the integral split at z0 where the
 * two mixture components cross, each half a series whose binomial coefficients change
 * sign; summed until the terms drop below e^-30 relative to 1.
 */
function logAFractional(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  const s2 = sigma * sigma;
  let logAbsBinom = 0; // log |C(alpha, i)|
  let binomSign = 1;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i;
      binomSign *= Math.sign(factor);
      logAbsBinom += Math.log(Math.abs(factor));
    }
    const j = alpha - i;
    const logT0 = logAbsBinom + i * Math.log(q) + j * Math.log1p(-q);
    const logT1 = logAbsBinom + j * Math.log(q) + i * Math.log1p(-q);
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * s2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * s2) + logE1;
    if (binomSign > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
    if (i > 100_000) throw new Error('RDP series did not converge');
  }
  return logAdd(logA0, logA1);
}

/** RDP ε(α) of ONE step of the Poisson-subsampled Gaussian mechanism. */
export function rdpOneStep(q: number, sigma: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new Error(`sampling rate must be in [0, 1]; got ${q}`);
  if (!(sigma >= 0)) throw new Error(`noise multiplier must be ≥ 0; got ${sigma}`);
  if (!(alpha > 1)) throw new Error(`RDP order must exceed 1; got ${alpha}`);
  if (q === 0) return 0;
  if (sigma === 0 || alpha === Infinity) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma);
  const logA = Number.isInteger(alpha) ? logAInteger(q, sigma, alpha) : logAFractional(q, sigma, alpha);
  return logA / (alpha - 1);
}

/** RDP composes additively: `steps` identical steps cost steps × one step, per order. */
export function rdpSubsampledGaussian(q: number, sigma: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS): number[] {
  if (!(Number.isInteger(steps) && steps >= 0)) throw new Error(`steps must be a non-negative integer; got ${steps}`);
  return orders.map((a) => (steps === 0 ? 0 : steps * rdpOneStep(q, sigma, a)));
}

/** One run of a subsampled Gaussian mechanism: what a node's ledger records per round. */
export interface GaussianEvent {
  samplingRate: number;
  noiseMultiplier: number;
  steps: number;
}

/** Total RDP of a sequence of (possibly different) mechanisms: the per-order sum. */
export function composeEvents(events: readonly GaussianEvent[], orders: readonly number[] = DEFAULT_ORDERS): number[] {
  const total = orders.map(() => 0);
  for (const e of events) {
    rdpSubsampledGaussian(e.samplingRate, e.noiseMultiplier, e.steps, orders).forEach((r, i) => (total[i]! += r));
  }
  return total;
}

export interface EpsilonAt {
  epsilon: number;
  /** The RDP order that gave the smallest ε. */
  order: number;
}

/**
 * RDP → (ε, δ) with the tighter conversion TF Privacy's dp_accounting and Opacus use now
 * (Balle et al. 2020 / Canonne, Kamath & Steinke 2020):
 *   ε = r(α) + log(1 − 1/α) − log(δ·α)/(α − 1),
 * minimised over α. Orders ≤ 1.01 are skipped (the bound is unstable there); an RDP so
 * small that δ ≥ sqrt(1 − e^−r) (Pinsker on the KL bound) gives ε = 0.
 */
export function epsilonFromRdp(orders: readonly number[], rdp: readonly number[], delta: number): EpsilonAt {
  checkDelta(delta);
  let best: EpsilonAt = { epsilon: Infinity, order: orders[0] ?? NaN };
  orders.forEach((a, i) => {
    const r = rdp[i]!;
    if (r < 0) throw new Error(`RDP must be ≥ 0; got ${r} at order ${a}`);
    let eps: number;
    if (delta * delta + Math.expm1(-r) >= 0) eps = 0;
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    else eps = Infinity;
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  });
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

/** The classic conversion of Mironov 2017 (ε = r(α) + log(1/δ)/(α − 1)); looser, kept for comparison. */
export function epsilonFromRdpClassic(orders: readonly number[], rdp: readonly number[], delta: number): EpsilonAt {
  checkDelta(delta);
  let best: EpsilonAt = { epsilon: Infinity, order: orders[0] ?? NaN };
  orders.forEach((a, i) => {
    const eps = rdp[i]! - Math.log(delta) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  });
  return best;
}

function checkDelta(delta: number): void {
  if (!(delta > 0 && delta < 1)) throw new Error(`delta must be in (0, 1); got ${delta}`);
}

export interface DpSgdParams {
  samplingRate: number;
  noiseMultiplier: number;
  steps: number;
  delta: number;
}

/** ε of DP-SGD with Poisson sampling at rate q for `steps` steps. */
export function dpSgdEpsilon(p: DpSgdParams, orders: readonly number[] = DEFAULT_ORDERS): EpsilonAt {
  return epsilonFromRdp(orders, rdpSubsampledGaussian(p.samplingRate, p.noiseMultiplier, p.steps, orders), p.delta);
}

/**
 * The smallest noise multiplier whose ε stays within `targetEpsilon` (to a relative 1e-4 in σ):
 * bisection, since ε falls monotonically as σ grows. Throws when even σ = 1e4 cannot reach it.
 */
export function noiseForEpsilon(
  p: { samplingRate: number; steps: number; delta: number; targetEpsilon: number },
  orders: readonly number[] = DEFAULT_ORDERS,
): number {
  if (!(p.targetEpsilon > 0)) throw new Error(`target ε must be > 0; got ${p.targetEpsilon}`);
  const eps = (sigma: number) => dpSgdEpsilon({ ...p, noiseMultiplier: sigma }, orders).epsilon;
  let lo = 0;
  let hi = 1;
  while (eps(hi) > p.targetEpsilon) {
    lo = hi;
    hi *= 2;
    if (hi > 1e4) throw new Error(`no noise multiplier up to 1e4 reaches ε = ${p.targetEpsilon}`);
  }
  while (hi - lo > 1e-4 * hi) {
    const mid = (lo + hi) / 2;
    if (eps(mid) > p.targetEpsilon) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * Client-level DP-FedAvg (McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially
 * Private Recurrent Language Models"): each participant's model delta is clipped to L2
 * norm S, the clipped deltas are summed with EQUAL weight, Gaussian noise N(0, σ²S²) is
 * added to the sum, and the result is divided by the expected number of participants.
 * One round is then the subsampled Gaussian mechanism over clients (q = participants /
 * clients, σ), so the RDP accountant prices the whole run with steps = rounds.
 *
 * Equal weights matter: weighting by a client's reported sample count would let one
 * client's influence exceed S. Pure: no tfjs, no I/O.
 */
import { normal, type Rng } from '../../../datasets/rng.js';
import { dpSgdEpsilon } from './rdp.js';

export interface DpFedAvgOptions {
  /** S: every client's delta is scaled down to at most this L2 norm. */
  clip: number;
  /** σ: noise std on the sum, as a multiple of S. */
  noiseMultiplier: number;
  /** The denominator: clients expected per round (a fixed number, not the count that answered). */
  expectedClients: number;
  rng: Rng;
}

export interface DpFedAvgResult {
  weights: Float32Array;
  /** Share of this round's deltas that the clip shrank (a signal for choosing S). */
  clippedShare: number;
  /** Deltas that fitted within S unchanged: adaptive clipping's count (released only noised). */
  unclipped: number;
}

export function l2Norm(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

/**
 * Streams the round: each client's delta is clipped and folded into one running sum, so
 * memory stays at two model-sized vectors whatever the number of clients.
 */
export function clippedDeltaSum(base: Float32Array, clip: number) {
  if (!(clip > 0)) throw new Error('DP-FedAvg needs clip > 0');
  const sum = new Float64Array(base.length);
  const delta = new Float32Array(base.length);
  let clients = 0;
  let clipped = 0;
  return {
    add(w: Float32Array): void {
      if (w.length !== base.length) throw new Error(`client update has ${w.length} values, model has ${base.length}`);
      for (let i = 0; i < base.length; i++) delta[i] = w[i]! - base[i]!;
      const norm = l2Norm(delta);
      const scale = norm > clip ? clip / norm : 1;
      if (scale < 1) clipped++;
      clients++;
      for (let i = 0; i < base.length; i++) sum[i]! += scale * delta[i]!;
    },
    /** base + (sum + N(0, σ²S²)) / expectedClients */
    release(noiseMultiplier: number, expectedClients: number, rng: Rng): DpFedAvgResult {
      if (!(noiseMultiplier >= 0) || !(expectedClients > 0)) throw new Error('DP-FedAvg needs noiseMultiplier ≥ 0 and expectedClients > 0');
      const std = noiseMultiplier * clip;
      const weights = new Float32Array(base.length);
      for (let i = 0; i < base.length; i++) weights[i] = base[i]! + (sum[i]! + (std > 0 ? std * normal(rng) : 0)) / expectedClients;
      return { weights, clippedShare: clients ? clipped / clients : 0, unclipped: clients - clipped };
    },
  };
}

/** base + (Σ_k clip_S(w_k − base) + N(0, σ²S²)) / expectedClients, for a round held in memory. */
export function dpFedAvgAggregate(base: Float32Array, clientWeights: readonly Float32Array[], o: DpFedAvgOptions): DpFedAvgResult {
  const sum = clippedDeltaSum(base, o.clip);
  for (const w of clientWeights) sum.add(w);
  return sum.release(o.noiseMultiplier, o.expectedClients, o.rng);
}

/** Client-level ε of `rounds` DP-FedAvg rounds where each client takes part with probability q. */
export function clientLevelEpsilon(p: { rounds: number; participationRate: number; noiseMultiplier: number; delta: number }): number {
  return dpSgdEpsilon({ samplingRate: p.participationRate, noiseMultiplier: p.noiseMultiplier, steps: p.rounds, delta: p.delta }).epsilon;
}

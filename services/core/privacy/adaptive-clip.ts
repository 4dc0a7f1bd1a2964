/**
 * Adaptive clipping for client-level DP-FedAvg (Andrew, Thakkar, McMahan & Ramaswamy 2021,
 * "Differentially Private Learning with Adaptive Clipping"). A fixed clip norm C is a guess:
 * too small and every update is cut (biased), too large and the noise σ·C drowns them. Here
 * C follows a target quantile γ of the clients' update norms, estimated privately:
 *
 *   each client reports one bit b_i = [‖Δ_i‖ ≤ C];
 *   the server releases b̄ = (Σ b_i + N(0, σ_b²)) / m   (m: clients the round chose);
 *   C ← C · exp(−η · (b̄ − γ))                           (geometric update).
 *
 * The bits are a second Gaussian mechanism on the same clients. Under add/remove-one-client
 * the bit sum (centred: Σ(b_i − ½)) has sensitivity ½, the updates' sum C, so the two
 * releases together are one Gaussian mechanism with noise multiplier
 * z = (σ_Δ⁻² + (2σ_b)⁻²)^(−1/2) (the paper's Theorem 1). To keep the run's ε exactly what the
 * accountant prices for dp.noiseMultiplier = z, the updates get the larger σ_Δ below; this
 * needs 2σ_b > z. Pure: no tfjs, no I/O.
 */
import { normal, type Rng } from '../../../datasets/rng.js';

export interface AdaptiveClipConfig {
  /** γ: the share of clients whose update should fit within C (0.5: the median norm). */
  targetQuantile: number;
  /** η: step of the geometric update; with η = 0.2, one round moves C by at most a factor e^0.2. */
  learningRate: number;
  /** σ_b: std of the Gaussian noise on the count of unclipped clients, in clients. */
  countNoiseMultiplier: number;
}

/**
 * σ_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2): the noise multiplier the updates need so that updates and
 * bits together cost no more than z alone. Throws when 2σ_b ≤ z (the bits alone would
 * already cost more than z allows).
 */
export function updateNoiseMultiplier(z: number, countNoiseMultiplier: number): number {
  if (!(z > 0)) throw new Error(`adaptive clipping needs a noise multiplier > 0; got ${z}`);
  const bitTerm = (2 * countNoiseMultiplier) ** -2;
  const rest = z ** -2 - bitTerm;
  if (!(rest > 0)) throw new Error(`dp.adaptiveClip.countNoiseMultiplier must exceed dp.noiseMultiplier / 2 = ${z / 2}; got ${countNoiseMultiplier}`);
  return rest ** -0.5;
}

/** b̄: the noised share of clients whose update fitted within C, over the m clients chosen. */
export function noisyUnclippedShare(unclipped: number, expectedClients: number, countNoiseMultiplier: number, rng: Rng): number {
  if (!(expectedClients > 0)) throw new Error('expectedClients must be > 0');
  return (unclipped + countNoiseMultiplier * normal(rng)) / expectedClients;
}

/** C · exp(−η (b̄ − γ)): shrinks C when more than γ of the updates fitted, grows it when fewer did. */
export function nextClip(clip: number, unclippedShare: number, cfg: Pick<AdaptiveClipConfig, 'targetQuantile' | 'learningRate'>): number {
  if (!(clip > 0)) throw new Error(`clip must be > 0; got ${clip}`);
  const next = clip * Math.exp(-cfg.learningRate * (unclippedShare - cfg.targetQuantile));
  // Keep C a usable float whatever the noise does over thousands of rounds.
  return Math.min(1e6, Math.max(1e-6, next));
}

/**
 * The filters of a 2-D wavelet scattering transform (Mallat 2012; Oyallon & Mallat 2015), the
 * data-independent features Tramèr & Boneh (2021) train DP models on. Pure numbers from (J, L)
 * alone: every node and every serving function generates the same bank, so no weights travel
 * and no training data shapes them (they cost no privacy).
 *
 * Scattering with J scales and L orientations, on an H×W image:
 *   S0 = x ⋆ φ_J                         (local average)
 *   S1 = |x ⋆ ψ_{j,θ}| ⋆ φ_J             for 0 ≤ j < J, θ < L
 *   S2 = ||x ⋆ ψ_{j1,θ1}| ⋆ ψ_{j2,θ2}| ⋆ φ_J   for j1 < j2
 * each sampled every 2^J pixels: 1 + JL + L²J(J−1)/2 channels per input channel at H/2^J × W/2^J
 * (J = 2, L = 8 on 28×28: 81 channels at 7×7).
 *
 * The filters are Kymatio's: Morlet wavelets ψ_{j,θ} with σ = 0.8·2^j, centre frequency
 * ξ = 3π/4·2^−j, slant 4/L (the envelope is 1/slant times longer across the oscillation), made
 * zero-mean by subtracting a multiple of their envelope; φ_J a Gaussian of σ = 0.8·2^(J−1) with
 * unit sum. Kymatio convolves in the Fourier domain on a periodised grid; here each filter is a
 * spatial kernel cut at 3 standard deviations of its envelope and the image is zero-padded
 * (digits have a zero border), so a conv2d kernel computes it.
 */

/** What a scattering layer computes: scales J and orientations L. */
export interface ScatteringParams {
  J: number;
  L: number;
}

/** A square kernel of side `size` (odd, centred), row-major, complex as two planes. */
export interface Kernel2D {
  size: number;
  re: Float64Array;
  im: Float64Array;
}

/** The whole bank: ψ[j][θ] and φ. */
export interface FilterBank {
  psi: Kernel2D[][];
  phi: Kernel2D;
}

const radiusFor = (std: number) => Math.ceil(3 * std);

/**
 * A Gabor filter: an elliptic Gaussian envelope (std σ along the oscillation, σ/slant across
 * it) times exp(i ξ·(x cos θ + y sin θ)), divided by 2πσ²/slant (Kymatio's normalisation).
 * x runs down the rows, y along the columns.
 */
function gabor(radius: number, sigma: number, theta: number, xi: number, slant: number): Kernel2D {
  const size = 2 * radius + 1;
  const [c, s] = [Math.cos(theta), Math.sin(theta)];
  // curvature R·diag(1, slant²)·Rᵀ / (2σ²)
  const a = (c * c + slant * slant * s * s) / (2 * sigma * sigma);
  const b = ((1 - slant * slant) * c * s) / (2 * sigma * sigma);
  const d = (s * s + slant * slant * c * c) / (2 * sigma * sigma);
  const norm = (2 * Math.PI * sigma * sigma) / slant;
  const re = new Float64Array(size * size);
  const im = new Float64Array(size * size);
  for (let u = 0; u < size; u++)
    for (let v = 0; v < size; v++) {
      const [x, y] = [u - radius, v - radius];
      const envelope = Math.exp(-(a * x * x + 2 * b * x * y + d * y * y)) / norm;
      const phase = xi * (x * c + y * s);
      re[u * size + v] = envelope * Math.cos(phase);
      im[u * size + v] = envelope * Math.sin(phase);
    }
  return { size, re, im };
}

/** A Morlet wavelet: the Gabor filter minus the multiple of its envelope that makes its sum zero. */
export function morlet(sigma: number, theta: number, xi: number, slant: number): Kernel2D {
  const radius = radiusFor(sigma / Math.min(1, slant));
  const wave = gabor(radius, sigma, theta, xi, slant);
  const env = gabor(radius, sigma, theta, 0, slant);
  const sum = (v: Float64Array) => v.reduce((p, q) => p + q, 0);
  const [kr, ki] = [sum(wave.re) / sum(env.re), sum(wave.im) / sum(env.re)];
  for (let i = 0; i < wave.re.length; i++) {
    wave.re[i]! -= kr * env.re[i]!;
    wave.im[i]! -= ki * env.re[i]!;
  }
  return wave;
}

/** The low-pass φ_J: a Gaussian of σ = 0.8·2^(J−1), scaled to unit sum (averages keep their level). */
export function lowPass(J: number): Kernel2D {
  const sigma = 0.8 * 2 ** (J - 1);
  const g = gabor(radiusFor(sigma), sigma, 0, 0, 1);
  const total = g.re.reduce((p, q) => p + q, 0);
  return { size: g.size, re: g.re.map((v) => v / total), im: new Float64Array(g.size * g.size) };
}

const banks = new Map<string, FilterBank>();

/** The filter bank of (J, L), built once per process. θ_l = (L/2 − 1 − l)·π/L as in Kymatio. */
export function filterBank({ J, L }: ScatteringParams): FilterBank {
  const key = `${J}/${L}`;
  let bank = banks.get(key);
  if (!bank) {
    const psi = Array.from({ length: J }, (_, j) => Array.from({ length: L }, (_, l) => morlet(0.8 * 2 ** j, ((L / 2 - 1 - l) * Math.PI) / L, ((3 / 4) * Math.PI) / 2 ** j, 4 / L)));
    banks.set(key, (bank = { psi, phi: lowPass(J) }));
  }
  return bank;
}

/** Channels out per channel in: 1 + JL + L²·J(J−1)/2 (81 for J = 2, L = 8). */
export const scatteringChannels = ({ J, L }: ScatteringParams): number => 1 + J * L + (L * L * J * (J - 1)) / 2;

/** Output [H, W, C] of a scattering layer on an [H, W, C] input: sides divided by 2^J (rounded up, as 'same' striding does). */
export function scatteringOutputShape(input: readonly number[], p: ScatteringParams): [number, number, number] {
  const step = 2 ** p.J;
  return [Math.ceil(input[0]! / step), Math.ceil(input[1]! / step), input[2]! * scatteringChannels(p)];
}

/**
 * Floats one example holds while its features are computed (order-1 and order-2 real and
 * imaginary responses and moduli at full resolution, and the output): what memory budgets count.
 */
export function scatteringActivationFloats(input: readonly number[], p: ScatteringParams): number {
  const pixels = input[0]! * input[1]! * input[2]!;
  return pixels * (2 * p.J * p.L + p.J * p.L + 3 * p.L * p.L * ((p.J * (p.J - 1)) / 2) + scatteringChannels(p));
}

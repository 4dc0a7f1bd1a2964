/**
 * Fixed-point encoding of an update for summation in Z_2^32 (Flower SecAgg+'s scheme):
 * each value is clipped to [−c, c] and mapped onto the integers 0..2^bits − 2. A sum
 * of k such integers stays below 2^32 while k ≤ 2^(32−bits), so the modular sum of the
 * masked inputs IS the integer sum once the masks cancel; decoding subtracts k·c.
 *
 * Rounding to the nearest level errs by at most c/(2^bits − 2) per value and node.
 */
export interface QuantizeParams {
  /** c: values are clipped to [−c, c]. */
  clipRange: number;
  /** bits per value; 32 − bits bounds the nodes a sum may hold (22 → 1024). */
  bits: number;
}

export const MODULUS_BITS = 32;

/**
 * The top level, even (2^bits − 2) so that 0 lands exactly on the middle level: an unchanged
 * weight (many are, in a round) then carries no rounding error, instead of the worst one
 * added with the same sign by every node.
 */
const levels = (p: QuantizeParams) => 2 ** p.bits - 2;

/** The largest number of quantized values that sum without wrapping around 2^32. */
export function maxSummands(p: QuantizeParams): number {
  return Math.floor((2 ** MODULUS_BITS - 1) / levels(p));
}

/** The worst-case error of one decoded value of a sum of k inputs. */
export function quantizationErrorBound(p: QuantizeParams, k: number): number {
  return (k * p.clipRange) / levels(p);
}

export function quantize(values: ArrayLike<number>, p: QuantizeParams, out = new Uint32Array(values.length)): Uint32Array {
  const c = p.clipRange;
  const scale = levels(p) / (2 * c);
  for (let i = 0; i < values.length; i++) {
    const v = Math.min(c, Math.max(-c, values[i]!));
    out[i] = Math.round((v + c) * scale);
  }
  return out;
}

/** Decodes the integer sum of k quantized inputs back to the sum of the (clipped) values. */
export function dequantizeSum(sum: ArrayLike<number>, k: number, p: QuantizeParams): Float64Array {
  if (k > maxSummands(p)) throw new Error(`${k} inputs of ${p.bits} bits overflow Z_2^${MODULUS_BITS}`);
  const step = (2 * p.clipRange) / levels(p);
  return Float64Array.from(sum, (s) => s * step - k * p.clipRange);
}

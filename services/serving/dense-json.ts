/**
 * A JSON array of numbers, nested regularly (every row of a level the same length), read
 * straight from the request's bytes into a Float32Array. Tensor bodies are almost all such
 * an array; JSON.parse builds a JS array per row and a double per value from them, and
 * then the walk copies every value again. Reading the numbers in place gives the same
 * Float32 values (Math.fround of the double JSON.parse gives) without the garbage: a
 * 100-digit TF Serving body (230 KB), counted, parsed and walked, took 1.2–1.3 ms through
 * JSON.parse and 0.57 ms so; the same digits written in full (n/255, 17 digits: 471 KB) 4.7–4.8
 * against 1.0 ms.
 *
 * Anything this reader does not take — a string, `true`, an object, an empty or ragged
 * array, a number whose Float32 it cannot be sure of — makes it give up, and the body goes
 * through JSON.parse as before, so refusals and their messages never depend on which path ran.
 */

import { InvalidInput } from './errors.js';

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const COMMA = 0x2c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const LOWER_E = 0x65;
const UPPER_E = 0x45;

/** Deeper arrays than this are left to JSON.parse (no model input nests more than a few levels). */
export const MAX_DENSE_DEPTH = 16;
/** Powers of ten up to 10^22 are exact doubles: a mantissa of at most 15 digits times or over one of them rounds once, correctly. */
const MAX_EXACT_POWER = 22;
const EXACT_POWERS = Float64Array.from({ length: MAX_EXACT_POWER + 1 }, (_, k) => 10 ** k);
const MAX_EXACT_DIGITS = 15;
/** Digits kept past the 15th (19 in all), for numbers written with more than a double holds. */
const LOW_DIGITS = 4;
const MARGIN = 2 ** -48;

const isSpace = (c: number | undefined) => c === SPACE || c === LF || c === CR || c === TAB;
const isDigit = (c: number | undefined): c is number => c !== undefined && c >= ZERO && c <= NINE;

/** What a successful read found: the array's dimensions, its values in row-major order, and whether every value lies in [0,1]. */
export interface DenseArray {
  dims: number[];
  values: Float32Array;
  /** Every value, as the double JSON.parse gives, is in [0,1] (checked before rounding to Float32). */
  unitRange: boolean;
  /** Index of the closing bracket. */
  end: number;
}

/**
 * Reads the array opening at `bytes[start]`, pausing at a value boundary once it has passed
 * `pauseAfter` bytes, so a large body is read over several turns of the event loop.
 */
export class DenseArrayReader {
  private readonly out: Float32Array;
  private readonly counts = new Int32Array(MAX_DENSE_DEPTH);
  /** Length of every row at each depth, once one has closed there (-1 before). */
  private readonly dims = new Int32Array(MAX_DENSE_DEPTH).fill(-1);
  private at: number;
  private depth = 0;
  private leafDepth = -1;
  private n = 0;
  private unitRange = true;

  /** `out` receives the values; its length bounds how many the array may hold (a body's comma count + 1 bounds them all). */
  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    out: Float32Array,
  ) {
    this.out = out;
    this.at = start;
  }

  /** Where reading stopped: the closing bracket, the byte it gave up at, or where it paused. */
  get position(): number {
    return this.at;
  }

  /** Reads on until the array ends (its result), the reader gives up (null), or `pauseAfter` bytes more were read ('paused'). */
  read(pauseAfter = Infinity): DenseArray | null | 'paused' {
    const b = this.bytes;
    const out = this.out;
    const counts = this.counts;
    const dims = this.dims;
    let leafDepth = this.leafDepth;
    let i = this.at;
    let depth = this.depth;
    let n = this.n;
    let unitRange = this.unitRange;
    const pauseAt = i + pauseAfter;
    for (;;) {
      let c = b[i];
      while (isSpace(c)) c = b[++i];
      if (c === OPEN_ARRAY) {
        if ((leafDepth >= 0 && depth >= leafDepth) || depth >= MAX_DENSE_DEPTH) return this.giveUp(i);
        counts[depth++] = 0;
        i++;
        continue;
      }
      // The commonest value of an image, a 0 followed by a comma, takes the short way.
      if (c === ZERO && b[i + 1] === COMMA && depth === leafDepth && n < out.length) {
        out[n++] = 0;
        counts[depth - 1]!++;
        i += 2;
        if (i >= pauseAt) return this.pause(i, depth, n, unitRange);
        continue;
      }
      if (depth === 0) return this.giveUp(i); // `start` is not an array
      if (leafDepth < 0) leafDepth = this.leafDepth = depth;
      else if (depth !== leafDepth) return this.giveUp(i); // a number beside rows
      if (n === out.length) return this.giveUp(i);
      // A number, in JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
      let negative = false;
      if (c === MINUS) {
        negative = true;
        c = b[++i];
      }
      // Up to 15 significant digits are exact in `high`; 4 more go into `low`; any after those are dropped (`truncated`).
      let high = 0;
      let highDigits = 0;
      let low = 0;
      let lowDigits = 0;
      let truncated = false;
      let scale = 0; // digits of the fraction kept
      if (c === ZERO) {
        c = b[++i];
        if (isDigit(c)) return this.giveUp(i); // a leading zero: JSON.parse refuses it
      } else if (isDigit(c)) {
        do {
          const d = c - ZERO;
          if (highDigits < MAX_EXACT_DIGITS) (high = high * 10 + d), highDigits++;
          else if (lowDigits < LOW_DIGITS) (low = low * 10 + d), lowDigits++;
          else (scale--, (truncated ||= d !== 0)); // a dropped integer digit still scales the rest
          c = b[++i];
        } while (isDigit(c));
      } else return this.giveUp(i);
      if (c === DOT) {
        c = b[++i];
        if (!isDigit(c)) return this.giveUp(i);
        do {
          const d = c - ZERO;
          if (highDigits === 0 && d === 0) scale++; // a leading zero of the fraction
          else if (highDigits < MAX_EXACT_DIGITS) (high = high * 10 + d), highDigits++, scale++;
          else if (lowDigits < LOW_DIGITS) (low = low * 10 + d), lowDigits++, scale++;
          else truncated ||= d !== 0;
          c = b[++i];
        } while (isDigit(c));
      }
      let exponent = 0;
      if (c === LOWER_E || c === UPPER_E) {
        c = b[++i];
        let sign = 1;
        if (c === MINUS || c === PLUS) {
          if (c === MINUS) sign = -1;
          c = b[++i];
        }
        if (!isDigit(c)) return this.giveUp(i);
        do {
          exponent = exponent * 10 + (c - ZERO);
          if (exponent > 1000) return this.giveUp(i);
          c = b[++i];
        } while (isDigit(c));
        exponent *= sign;
      }
      const power = exponent - scale;
      let v: number;
      if (high === 0) v = 0;
      else if (lowDigits === 0 && !truncated) {
        // Clinger's fast path: both factors exact, so the one rounding is the correct one.
        if (power < -MAX_EXACT_POWER || power > MAX_EXACT_POWER) return this.giveUp(i);
        v = power >= 0 ? high * EXACT_POWERS[power]! : high / EXACT_POWERS[-power]!;
      } else {
        v = nearSingle(high * EXACT_POWERS[lowDigits]! + low, power);
        if (Number.isNaN(v)) return this.giveUp(i);
      }
      if (v > 1) unitRange = false;
      if (negative) {
        v = -v;
        if (v !== 0) unitRange = false;
      }
      out[n++] = v;
      // After a value: closing brackets, then a comma or the end of the whole array.
      for (;;) {
        while (isSpace(c)) c = b[++i];
        counts[depth - 1]!++;
        if (c === COMMA) {
          i++;
          break;
        }
        if (c !== CLOSE_ARRAY) return this.giveUp(i);
        const length = counts[--depth]!;
        const known = dims[depth]!;
        if (known < 0) dims[depth] = length;
        else if (known !== length) return this.giveUp(i); // ragged
        if (depth === 0) {
          this.at = i;
          return { dims: Array.from(dims.subarray(0, leafDepth)), values: out.subarray(0, n), unitRange, end: i };
        }
        c = b[++i];
      }
      if (i >= pauseAt) return this.pause(i, depth, n, unitRange);
    }
  }

  private pause(at: number, depth: number, n: number, unitRange: boolean): 'paused' {
    this.at = at;
    this.depth = depth;
    this.n = n;
    this.unitRange = unitRange;
    return 'paused';
  }

  private giveUp(at: number): null {
    this.at = at;
    return null;
  }
}

/**
 * A tensor read by DenseArrayReader, standing in a parsed body where the nested arrays would
 * be. Readers of tensors (tensor-input.ts) take its values directly when their shape and
 * range are what the model takes, and otherwise ask for `nested()` — what JSON.parse gives
 * for the same bytes — and check that as any body, so every refusal reads the same.
 */
export class DenseTensor {
  constructor(
    readonly dims: readonly number[],
    readonly values: Float32Array,
    readonly unitRange: boolean,
    private readonly text: () => string,
  ) {}

  nested(): unknown[] {
    try {
      return JSON.parse(this.text()) as unknown[];
    } catch {
      // Unreachable while the reader takes only what JSON.parse takes (test/dense-json.test.ts); a 400 if it ever did not.
      throw new InvalidInput('invalid_json', 'request body is not valid JSON');
    }
  }
}

/**
 * mantissa × 10^power for a mantissa of more than 15 digits (JSON.stringify writes n/255 with
 * 17), when the Float32 it rounds to is certainly the Float32 of the double JSON.parse gives,
 * and whether it is above 1 is certain too; else NaN. The double computed here is within 2^-51
 * (relative) of the number written: three roundings, and digits past the 19th dropped. So
 * when every value within 2^-48 of it rounds to one Float32 — true unless it lies that close
 * to the midpoint between two Float32s, about one value in 2^24 — so does JSON.parse's
 * double; and when 1 is not within that margin, both lie on the same side of it.
 */
export function nearSingle(mantissa: number, power: number): number {
  if (power < -MAX_EXACT_POWER || power > MAX_EXACT_POWER) return NaN;
  const d = power >= 0 ? mantissa * EXACT_POWERS[power]! : mantissa / EXACT_POWERS[-power]!;
  const below = d * (1 - MARGIN);
  const above = d * (1 + MARGIN);
  const single = Math.fround(d);
  if (Math.fround(below) !== single || Math.fround(above) !== single || (below <= 1 && above > 1)) return NaN;
  // The double, not its Float32: (1, 1 + 2^-24) rounds to a Float32 of 1, yet JSON.parse's double is above 1.
  return d;
}

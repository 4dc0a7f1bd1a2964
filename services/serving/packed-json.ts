import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * A JSON array of plain numbers, nested regularly (every array at one depth has the same
 * length), parsed straight from the request bytes into doubles: what a tensor body is, read
 * without building one JavaScript array per row and one slot per number. Its values are
 * exactly the numbers JSON.parse would give (see parsePackedArray), so the adapters can take
 * either form and answer the same (tensor-input.ts falls back to the nested form for anything
 * but the plain accepted cases).
 */
export class PackedArray {
  constructor(
    readonly shape: readonly number[],
    readonly values: Float64Array,
  ) {}

  /** The nested arrays JSON.parse would have built from the same text. */
  toNested(): unknown[] {
    let at = 0;
    const build = (dim: number): unknown[] => {
      const n = this.shape[dim]!;
      const out: unknown[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = dim === this.shape.length - 1 ? this.values[at++] : build(dim + 1);
      return out;
    };
    return build(0);
  }
}

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const PLUS = 0x2b;

/** Powers of ten that are exact doubles (10^0 .. 10^22). */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));
/** Digits a mantissa may have and stay an exact integer double (< 2^53). */
const MAX_DIGITS = 15;

/** Thrown inside the parser for any text it does not read exactly; the caller then uses JSON.parse. */
const NOT_PLAIN = Symbol('not a plain numeric array');

/**
 * Parses `bytes[start..end]` (an array's `[` and its matching `]`) as a regular array of
 * numbers, or returns undefined when it is anything else (empty, ragged, mixed, strings,
 * literals, malformed). A number is read only when its value is exact: at most 15 digits and
 * a decimal exponent within ±22, so that it is one correctly rounded division or
 * multiplication of two exact doubles, the value JSON.parse gives; any other number sends the
 * whole body to JSON.parse. Every `turnBytes` of top-level elements the event loop gets a turn.
 */
export async function parsePackedArray(bytes: Buffer, start: number, end: number, turnBytes = 256 * 1024): Promise<PackedArray | undefined> {
  const p = new Parser(bytes, end);
  try {
    if (bytes[start] !== OPEN) return undefined;
    p.pos = start + 1;
    let count = 0;
    let lastTurn = start;
    for (;;) {
      p.element(0);
      count++;
      p.skipSpace();
      const b = bytes[p.pos];
      p.pos++;
      if (b === CLOSE) break;
      if (b !== COMMA) return undefined;
      if (p.pos - lastTurn >= turnBytes) {
        lastTurn = p.pos;
        await nextTurn();
      }
    }
    if (p.pos !== end + 1) return undefined;
    p.settle(0, count);
    return new PackedArray(p.shape, p.values.subarray(0, p.size));
  } catch (e) {
    if (e === NOT_PLAIN) return undefined;
    throw e;
  }
}

class Parser {
  pos = 0;
  shape: number[] = [];
  /** Depth of the arrays that hold numbers (-1: not seen yet). */
  leafDepth = -1;
  values = new Float64Array(1024);
  size = 0;

  constructor(
    private readonly bytes: Buffer,
    private readonly end: number,
  ) {}

  skipSpace(): void {
    let b = this.bytes[this.pos];
    while (b === SPACE || b === LF || b === CR || b === TAB) b = this.bytes[++this.pos];
  }

  /** One element of an array at `depth`: a number (leaf) or an array one deeper. */
  element(depth: number): void {
    this.skipSpace();
    if (this.pos >= this.end) throw NOT_PLAIN;
    if (this.bytes[this.pos] === OPEN) {
      if (this.leafDepth !== -1 && this.leafDepth <= depth) throw NOT_PLAIN;
      this.array(depth + 1);
      return;
    }
    if (this.leafDepth === -1) this.leafDepth = depth;
    else if (this.leafDepth !== depth) throw NOT_PLAIN;
    this.push(this.number());
  }

  /** An array at `depth` (pos at its `[`), non-empty, of the same length as every other at that depth. */
  private array(depth: number): void {
    this.pos++;
    let count = 0;
    for (;;) {
      this.element(depth);
      count++;
      this.skipSpace();
      const b = this.bytes[this.pos++];
      if (b === CLOSE) break;
      if (b !== COMMA) throw NOT_PLAIN;
    }
    this.settle(depth, count);
  }

  settle(depth: number, count: number): void {
    if (this.shape[depth] === undefined) this.shape[depth] = count;
    else if (this.shape[depth] !== count) throw NOT_PLAIN;
  }

  private push(v: number): void {
    if (this.size === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.size++] = v;
  }

  /** A JSON number whose value is exact (see parsePackedArray); anything else throws NOT_PLAIN. */
  private number(): number {
    const bytes = this.bytes;
    let pos = this.pos;
    const negative = bytes[pos] === MINUS;
    if (negative) pos++;
    let b = bytes[pos]!;
    if (b < ZERO || b > NINE) throw NOT_PLAIN;
    let mantissa = 0;
    let digits = 0;
    if (b === ZERO) {
      b = bytes[++pos]!;
      if (b >= ZERO && b <= NINE) throw NOT_PLAIN; // a leading zero: not JSON
    } else {
      while (b >= ZERO && b <= NINE) {
        mantissa = mantissa * 10 + (b - ZERO);
        digits++;
        b = bytes[++pos]!;
      }
    }
    let exponent = 0;
    if (b === DOT) {
      b = bytes[++pos]!;
      if (b < ZERO || b > NINE) throw NOT_PLAIN;
      while (b >= ZERO && b <= NINE) {
        mantissa = mantissa * 10 + (b - ZERO);
        digits++;
        exponent--;
        b = bytes[++pos]!;
      }
    }
    if (b === LOWER_E || b === UPPER_E) {
      b = bytes[++pos]!;
      const sign = b === MINUS ? -1 : 1;
      if (b === MINUS || b === PLUS) b = bytes[++pos]!;
      if (b < ZERO || b > NINE) throw NOT_PLAIN;
      let e = 0;
      while (b >= ZERO && b <= NINE) {
        e = e * 10 + (b - ZERO);
        if (e > 1000) throw NOT_PLAIN;
        b = bytes[++pos]!;
      }
      exponent += sign * e;
    }
    if (digits > MAX_DIGITS || exponent < -22 || exponent > 22) throw NOT_PLAIN;
    this.pos = pos;
    const v = exponent < 0 ? mantissa / POW10[-exponent]! : mantissa * POW10[exponent]!;
    return negative ? -v : v;
  }
}

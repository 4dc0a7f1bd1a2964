/**
 * Shamir secret sharing over the prime field GF(2^521 − 1) (a Mersenne prime, so any
 * 64-byte secret is one field element). A secret is the constant term of a random
 * polynomial of degree t − 1; share i is the polynomial at x = i (1-based). Any t shares
 * give the secret back by Lagrange interpolation at 0; t − 1 shares say nothing about it.
 *
 * The coefficients come from a caller-supplied byte source, so a stateless node can
 * re-derive exactly the same shares when an invocation is repeated.
 */
export const FIELD_PRIME = (1n << 521n) - 1n;
/** Bytes of one field element on the wire (521 bits round up to 66 bytes). */
export const ELEMENT_BYTES = 66;
export const MAX_SECRET_BYTES = 64;

export interface Share {
  x: number;
  y: bigint;
}

const mod = (a: bigint) => ((a % FIELD_PRIME) + FIELD_PRIME) % FIELD_PRIME;

export function bytesToBigInt(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b).toString('hex'));
}

export function bigIntToBytes(v: bigint, length: number): Buffer {
  const hex = v.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new Error(`value does not fit in ${length} bytes`);
  return Buffer.from(hex, 'hex');
}

function modPow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % FIELD_PRIME;
    b = (b * b) % FIELD_PRIME;
  }
  return result;
}

const inverse = (a: bigint) => modPow(a, FIELD_PRIME - 2n);

/**
 * Splits `secret` into n shares, any t of which recover it. `randomBytes(k)` supplies the
 * coefficients (a CSPRNG, or an HKDF stream for re-derivable shares).
 */
export function split(secret: Uint8Array, n: number, t: number, randomBytes: (k: number) => Uint8Array): Share[] {
  if (secret.length > MAX_SECRET_BYTES) throw new Error(`secret is longer than ${MAX_SECRET_BYTES} bytes`);
  if (!(Number.isInteger(t) && Number.isInteger(n) && t >= 1 && t <= n)) throw new Error(`threshold ${t} must be in 1..${n}`);
  const coefficients = [bytesToBigInt(secret)];
  // 65 random bytes reduced mod p: bias below 2^-7, irrelevant here since the secret itself is uniform.
  for (let k = 1; k < t; k++) coefficients.push(mod(bytesToBigInt(randomBytes(ELEMENT_BYTES))));
  return Array.from({ length: n }, (_, i) => ({ x: i + 1, y: evaluate(coefficients, BigInt(i + 1)) }));
}

function evaluate(coefficients: readonly bigint[], x: bigint): bigint {
  let y = 0n;
  for (let k = coefficients.length - 1; k >= 0; k--) y = (y * x + coefficients[k]!) % FIELD_PRIME;
  return y;
}

/** The polynomial through `shares` (distinct x), evaluated at `at` (0: the secret). */
export function interpolate(shares: readonly Share[], at = 0n): bigint {
  const xs = new Set(shares.map((s) => s.x));
  if (xs.size !== shares.length) throw new Error('shares must have distinct x');
  let acc = 0n;
  for (const i of shares) {
    let num = 1n;
    let den = 1n;
    for (const j of shares) {
      if (j === i) continue;
      num = (num * mod(at - BigInt(j.x))) % FIELD_PRIME;
      den = (den * mod(BigInt(i.x) - BigInt(j.x))) % FIELD_PRIME;
    }
    acc = (acc + i.y * num * inverse(den)) % FIELD_PRIME;
  }
  return acc;
}

/**
 * The secret from at least t shares, as `length` bytes. Every share beyond the first t must
 * lie on the same polynomial: a forged or corrupted share is an error, never a wrong secret
 * (when more than t shares are at hand).
 */
export function reconstruct(shares: readonly Share[], t: number, length: number): Buffer {
  if (shares.length < t) throw new Error(`${shares.length} shares cannot recover a secret shared with threshold ${t}`);
  const basis = shares.slice(0, t);
  for (const extra of shares.slice(t)) {
    if (interpolate(basis, BigInt(extra.x)) !== mod(extra.y)) throw new InconsistentShareError(extra.x);
  }
  return bigIntToBytes(interpolate(basis), length);
}

export class InconsistentShareError extends Error {
  constructor(readonly x: number) {
    super(`share ${x} does not lie on the polynomial the other shares define`);
  }
}

export function encodeShare(s: Share): Buffer {
  const out = Buffer.alloc(4 + ELEMENT_BYTES);
  out.writeUInt32BE(s.x, 0);
  bigIntToBytes(s.y, ELEMENT_BYTES).copy(out, 4);
  return out;
}

export function decodeShare(b: Uint8Array): Share {
  if (b.length !== 4 + ELEMENT_BYTES) throw new Error(`a share is ${4 + ELEMENT_BYTES} bytes, got ${b.length}`);
  const y = bytesToBigInt(b.subarray(4));
  if (y >= FIELD_PRIME) throw new Error('share value is outside the field');
  return { x: Buffer.from(b).readUInt32BE(0), y };
}

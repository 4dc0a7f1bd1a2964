/**
 * Masking in Z_2^32 (Bonawitz et al. 2017, §4): y_u = x_u + PRG(b_u) + Σ_{v∈U2, v≠u} ±PRG(s_uv),
 * the sign + when u < v and − when u > v, so every pairwise mask appears once with each
 * sign in the sum over U2 and cancels; the self-mask PRG(b_u) is removed once b_u is
 * reconstructed from t shares. Uint32 arithmetic wraps exactly at 2^32 (`>>> 0`).
 */
import { prgWords } from './prg.js';

export type Sign = 1 | -1;

/** + for the lexicographically smaller node of a pair, − for the larger. */
export const pairSign = (self: string, other: string): Sign => (self < other ? 1 : -1);

/** acc ← acc ± v (mod 2^32), in place. */
export function addInto(acc: Uint32Array, v: Uint32Array, sign: Sign = 1): Uint32Array {
  if (acc.length !== v.length) throw new Error(`vector lengths differ: ${acc.length} vs ${v.length}`);
  if (sign === 1) for (let i = 0; i < acc.length; i++) acc[i] = (acc[i]! + v[i]!) >>> 0;
  else for (let i = 0; i < acc.length; i++) acc[i] = (acc[i]! - v[i]!) >>> 0;
  return acc;
}

export interface PairMask {
  sign: Sign;
  seed: Uint8Array;
}

/** y = x + PRG(selfSeed) + Σ sign·PRG(pair seed), a new vector. */
export function maskInput(x: Uint32Array, selfSeed: Uint8Array, pairs: readonly PairMask[]): Uint32Array {
  const y = Uint32Array.from(x);
  addInto(y, prgWords(selfSeed, x.length));
  for (const p of pairs) addInto(y, prgWords(p.seed, x.length), p.sign);
  return y;
}

/** Words ↔ bytes (little-endian, 4 per word) for storage. */
export function wordsToBytes(w: Uint32Array): Buffer {
  const out = Buffer.alloc(w.length * 4);
  for (let i = 0; i < w.length; i++) out.writeUInt32LE(w[i]!, i * 4);
  return out;
}

export function bytesToWords(b: Uint8Array): Uint32Array {
  if (b.length % 4 !== 0) throw new Error('a masked vector is a whole number of 32-bit words');
  const out = new Uint32Array(b.length / 4);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

/**
 * The pseudo-random generator that expands a 32-byte seed into a mask: the AES-256-CTR
 * keystream (node:crypto, hardware AES) under the seed with a zero counter. Every seed is
 * derived for one purpose in one round, so a (key, counter) pair is never reused.
 */
import { createCipheriv } from 'node:crypto';

const ZERO_IV = Buffer.alloc(16);

/** The first `length` bytes of the keystream for `seed`. */
export function prgBytes(seed: Uint8Array, length: number): Buffer {
  if (seed.length !== 32) throw new Error(`a PRG seed is 32 bytes, got ${seed.length}`);
  const cipher = createCipheriv('aes-256-ctr', seed, ZERO_IV);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/** `length` uniform words of Z_2^32 from `seed`. */
export function prgWords(seed: Uint8Array, length: number): Uint32Array {
  const bytes = prgBytes(seed, length * 4);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, length);
}

/** A byte source reading the keystream of `seed` onward (Shamir coefficients a node can re-derive). */
export function prgStream(seed: Uint8Array): (n: number) => Buffer {
  let offset = 0;
  return (n) => {
    const chunk = prgBytes(seed, offset + n).subarray(offset);
    offset += n;
    return chunk;
  };
}

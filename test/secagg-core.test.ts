import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FIELD_PRIME, InconsistentShareError, decodeShare, encodeShare, interpolate, reconstruct, split } from '../services/core/secagg/shamir.js';
import { prgWords } from '../services/core/secagg/prg.js';
import { addInto, bytesToWords, maskInput, pairSign, wordsToBytes } from '../services/core/secagg/masking.js';
import { dequantizeSum, maxSummands, quantize, quantizationErrorBound } from '../services/core/secagg/quantize.js';
import { deriveRoundKeys, openShares, pairMaskSeed, pairShareKey, sealShares } from '../services/core/secagg/keys.js';
import { advertise, decodeSum, encodeInput, maskedInput, openPeerShares, roster, shareKeys, unmaskSum, UnmaskError } from '../services/core/secagg/protocol.js';
import type { Share } from '../services/core/secagg/shamir.js';
import { createRng } from '../datasets/rng.js';

/** Every k-subset of xs. */
function subsets<T>(xs: readonly T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (xs.length < k) return [];
  const [head, ...rest] = xs;
  return [...subsets(rest, k - 1).map((s) => [head!, ...s]), ...subsets(rest, k)];
}

describe('Shamir sharing over GF(2^521 − 1)', () => {
  const secret = randomBytes(32);
  const shares = split(secret, 5, 3, randomBytes);

  it('any t of n shares recover the secret', () => {
    for (const s of subsets(shares, 3)) expect(reconstruct(s, 3, 32).equals(secret)).toBe(true);
    for (const s of subsets(shares, 4)) expect(reconstruct(s, 3, 32).equals(secret)).toBe(true);
  });

  it('t − 1 shares are refused, and interpolating them anyway gives something else', () => {
    expect(() => reconstruct(shares.slice(0, 2), 3, 32)).toThrow(/threshold 3/);
    const guess = interpolate(shares.slice(0, 2));
    expect(guess).not.toBe(BigInt('0x' + secret.toString('hex')));
  });

  it('t − 1 shares are consistent with every secret (a 2-of-3 sharing: one share fits any secret)', () => {
    // For t = 2 the polynomial through (0, anything) and one share always exists: the share alone fixes nothing.
    const [one] = split(secret, 3, 2, randomBytes);
    for (const other of [0n, 1n, FIELD_PRIME - 1n]) expect(interpolate([{ x: 0, y: other }, one!], 0n)).toBe(other);
  });

  it('a forged share among more than t is detected, never silently used', () => {
    const forged: Share[] = shares.map((s, i) => (i === 4 ? { x: s.x, y: (s.y + 1n) % FIELD_PRIME } : s));
    expect(() => reconstruct(forged, 3, 32)).toThrow(InconsistentShareError);
  });

  it('shares round-trip through bytes and out-of-field values are refused', () => {
    for (const s of shares) expect(decodeShare(encodeShare(s))).toEqual(s);
    const bad = encodeShare({ x: 1, y: 0n });
    bad.fill(0xff, 4);
    expect(() => decodeShare(bad)).toThrow(/outside the field/);
  });

  it('the same byte source gives the same shares (a stateless node re-derives them)', () => {
    const seed = randomBytes(32);
    const a = split(secret, 4, 2, (k) => prgWords(seed, k).subarray(0, k) as unknown as Uint8Array);
    const b = split(secret, 4, 2, (k) => prgWords(seed, k).subarray(0, k) as unknown as Uint8Array);
    expect(a).toEqual(b);
  });
});

describe('masks and quantization', () => {
  it('pairwise masks cancel in the sum, self-masks do not', () => {
    const ids = ['a', 'b', 'c'];
    const d = 1000;
    const seeds = new Map<string, Buffer>();
    const seedOf = (u: string, v: string) => seeds.get([u, v].sort().join()) ?? seeds.set([u, v].sort().join(), randomBytes(32)).get([u, v].sort().join())!;
    const xs = ids.map((_, k) => Uint32Array.from({ length: d }, (_, i) => (i * 7 + k) % 1000));
    const selfSeeds = ids.map(() => randomBytes(32));
    const ys = ids.map((u, k) => maskInput(xs[k]!, selfSeeds[k]!, ids.filter((v) => v !== u).map((v) => ({ sign: pairSign(u, v), seed: seedOf(u, v) }))));
    const sum = new Uint32Array(d);
    for (const y of ys) addInto(sum, y);
    const plain = new Uint32Array(d);
    for (const x of xs) addInto(plain, x);
    expect(sum).not.toEqual(plain);
    for (const s of selfSeeds) addInto(sum, prgWords(s, d), -1);
    expect(sum).toEqual(plain);
    // One masked input alone looks nothing like its input.
    expect(ys[0]!.filter((v, i) => v === xs[0]![i]).length).toBeLessThan(5);
  });

  it('decoding a quantized sum errs by at most k·c/(2^bits − 1) per value, and clips out-of-range values', () => {
    const q = { clipRange: 1, bits: 22 };
    const rng = createRng(3);
    const k = 10;
    const inputs = Array.from({ length: k }, () => Float64Array.from({ length: 5000 }, () => (rng() - 0.5) * 1.8));
    const sum = new Uint32Array(5000);
    for (const v of inputs) addInto(sum, quantize(v, q));
    const decoded = dequantizeSum(sum, k, q);
    let worst = 0;
    for (let i = 0; i < 5000; i++) worst = Math.max(worst, Math.abs(decoded[i]! - inputs.reduce((s, v) => s + v[i]!, 0)));
    expect(worst).toBeLessThanOrEqual(quantizationErrorBound(q, k) + 1e-12);
    expect(worst).toBeGreaterThan(0);
    expect(dequantizeSum(quantize([5, -5], q), 1, q)).toEqual(Float64Array.from([1, -1]));
    // Zero is a level: unchanged weights sum without error however many nodes send them.
    const zeros = new Uint32Array(3);
    for (let k2 = 0; k2 < 1000; k2++) addInto(zeros, quantize([0, 0, 0], q));
    expect(dequantizeSum(zeros, 1000, q)).toEqual(Float64Array.from([0, 0, 0]));
    expect(maxSummands(q)).toBe(1024);
    expect(() => dequantizeSum(sum, 1025, q)).toThrow(/overflow/);
  });

  it('words survive storage as bytes', () => {
    const w = Uint32Array.from([0, 1, 2 ** 32 - 1, 123456789]);
    expect(bytesToWords(wordsToBytes(w))).toEqual(w);
  });
});

describe('round keys', () => {
  const round = { runId: 'r1', round: 3, attempt: 1 };
  it('are the same when re-derived and differ across rounds and nodes', () => {
    const secret = randomBytes(32);
    const k = deriveRoundKeys(secret, round, 'node-0');
    expect(deriveRoundKeys(secret, round, 'node-0')).toEqual(k);
    expect(deriveRoundKeys(secret, { ...round, round: 4 }, 'node-0').sPublic.equals(k.sPublic)).toBe(false);
    expect(deriveRoundKeys(secret, round, 'node-1').selfSeed.equals(k.selfSeed)).toBe(false);
    // A retried round (next attempt) never reuses keys whose shares a failed attempt may have revealed.
    expect(deriveRoundKeys(secret, { ...round, attempt: 2 }, 'node-0').sSecret.equals(k.sSecret)).toBe(false);
  });

  it('both ends of a pair agree the mask seed and share key; a tampered ciphertext is refused', () => {
    const a = deriveRoundKeys(randomBytes(32), round, 'a');
    const b = deriveRoundKeys(randomBytes(32), round, 'b');
    expect(pairMaskSeed(a.sSecret, b.sPublic, round, 'a', 'b')).toEqual(pairMaskSeed(b.sSecret, a.sPublic, round, 'b', 'a'));
    const key = pairShareKey(a.cSecret, b.cPublic, round, 'a', 'b');
    expect(pairShareKey(b.cSecret, a.cPublic, round, 'b', 'a')).toEqual(key);
    const sealed = sealShares(key, round, 'a', 'b', Buffer.from('hello'));
    expect(openShares(key, round, 'a', 'b', sealed).toString()).toBe('hello');
    const forged = Buffer.from(sealed);
    forged[14]! ^= 1;
    expect(() => openShares(key, round, 'a', 'b', forged)).toThrow();
    expect(() => openShares(key, round, 'b', 'a', sealed)).toThrow();
  });
});

/** The whole protocol among `n` in-memory nodes with threshold t; `drop` vanish after sharing, before masking. */
function simulate(n: number, t: number, drop: string[], forge?: (revealed: Map<string, Share[]>) => void) {
  const round = { runId: 'sim', round: 1, attempt: 1 };
  const q = { clipRange: 1, bits: 22 };
  const ids = roster(Array.from({ length: n }, (_, i) => `node-${i}`));
  const keys = new Map(ids.map((id) => [id, deriveRoundKeys(randomBytes(32), round, id)]));
  const u1 = ids.map((id) => advertise(keys.get(id)!, id));
  const sealed = new Map(ids.map((id) => [id, shareKeys(keys.get(id)!, round, id, u1, t)]));
  const rng = createRng(n);
  const deltas = new Map(ids.map((id) => [id, Float32Array.from({ length: 300 }, () => (rng() - 0.5) * 0.1)]));
  const samples = new Map(ids.map((id, i) => [id, 100 + 10 * i]));
  const survivors = ids.filter((id) => !drop.includes(id));
  const masked = new Map(survivors.map((id) => [id, maskedInput(encodeInput(deltas.get(id)!, samples.get(id)!, 1000, q), keys.get(id)!, round, id, u1)]));
  const revealed = new Map<string, Share[]>();
  for (const u of survivors) {
    for (const v of u1) {
      const { s, b } = openPeerShares(keys.get(u)!, round, u, v, sealed.get(v.nodeId)!.get(u)!);
      revealed.set(v.nodeId, [...(revealed.get(v.nodeId) ?? []), masked.has(v.nodeId) ? b : s]);
    }
  }
  forge?.(revealed);
  const sum = unmaskSum({ round, threshold: t, u2: u1, masked, revealed });
  const decoded = decodeSum(sum, survivors.length, 1000, q);
  let worst = 0;
  for (let i = 0; i < 300; i++) {
    const plain = survivors.reduce((acc, id) => acc + (samples.get(id)! / 1000) * deltas.get(id)![i]!, 0);
    worst = Math.max(worst, Math.abs(decoded.weightedDeltaSum[i]! - plain));
  }
  return { worst, samples: decoded.samples, expectedSamples: survivors.reduce((a, id) => a + samples.get(id)!, 0), bound: quantizationErrorBound(q, survivors.length) };
}

describe('the protocol end to end (in memory)', () => {
  it('recovers Σ r·Δ within the quantization bound and Σ samples exactly, with nobody dropping', () => {
    const r = simulate(5, 3, []);
    expect(r.worst).toBeLessThanOrEqual(r.bound);
    expect(r.samples).toBe(r.expectedSamples);
  });

  it('recovers the sum of the survivors when n − t nodes drop after sharing', () => {
    const r = simulate(5, 3, ['node-1', 'node-4']);
    expect(r.worst).toBeLessThanOrEqual(r.bound);
    expect(r.samples).toBe(r.expectedSamples);
  });

  it('fails, revealing nothing, with fewer survivors than the threshold', () => {
    expect(() => simulate(5, 3, ['node-0', 'node-1', 'node-2'])).toThrow(UnmaskError);
  });

  it('a forged revealed share fails the round with an error naming the node', () => {
    const forgeFirst = (revealed: Map<string, Share[]>) => {
      const s = revealed.get('node-2')!;
      s[0] = { x: s[0]!.x, y: s[0]!.y + 1n };
    };
    // Exactly t shares: the rebuilt seed misses its commitment.
    expect(() => simulate(3, 3, [], forgeFirst)).toThrow(/node-2.*forged/);
    // More than t: the shares disagree.
    expect(() => simulate(4, 2, [], forgeFirst)).toThrow(/node-2/);
  });
});

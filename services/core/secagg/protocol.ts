/**
 * The protocol's arithmetic, stage by stage, free of I/O (the trainer and the aggregator
 * adapters call these with what they read from PostgreSQL):
 *
 *   0 advertise  each node publishes its c and s public keys and a commitment to b;
 *   1 share      each node Shamir-shares s_sk and b among the advertised nodes U1,
 *                encrypting each peer's pair of shares to that peer;
 *   2 mask       each node of U2 (those that shared) sends y_u = x_u + masks;
 *   3 unmask     each survivor (U3) reveals, for every v in U2, b_v's share if v survived,
 *                else s_sk_v's share; the aggregator rebuilds them and removes the masks.
 */
import { deriveRoundKeys, openShares, pairMaskSeed, pairShareKey, sealShares, seedCommitment, x25519Public, type RoundId, type RoundKeys } from './keys.js';
import { addInto, maskInput, pairSign } from './masking.js';
import { prgStream, prgWords } from './prg.js';
import { dequantizeSum, quantize, type QuantizeParams } from './quantize.js';
import { decodeShare, encodeShare, reconstruct, split, type Share } from './shamir.js';

export interface Advertised {
  nodeId: string;
  cPublic: Buffer;
  sPublic: Buffer;
  selfSeedCommitment: string;
}

export function advertise(keys: RoundKeys, nodeId: string): Advertised {
  return { nodeId, cPublic: keys.cPublic, sPublic: keys.sPublic, selfSeedCommitment: seedCommitment(keys.selfSeed) };
}

/** The bytes a node's key advertisement is authenticated over. */
export const advertisedPayload = (a: Advertised) => Buffer.concat([a.cPublic, a.sPublic, Buffer.from(a.selfSeedCommitment)]);

/** Sorted, duplicate-free node ids: the index of a node in U1 is its Shamir x − 1 everywhere. */
export const roster = (ids: Iterable<string>) => [...new Set(ids)].sort();

/** Node u's sealed shares for every member of U1 (itself included), keyed by recipient. */
export function shareKeys(keys: RoundKeys, round: RoundId, self: string, u1: readonly Advertised[], threshold: number): Map<string, Buffer> {
  const random = prgStream(keys.coefficientSeed);
  const sShares = split(keys.sSecret, u1.length, threshold, random);
  const bShares = split(keys.selfSeed, u1.length, threshold, random);
  const out = new Map<string, Buffer>();
  u1.forEach((peer, i) => {
    const key = pairShareKey(keys.cSecret, peer.cPublic, round, self, peer.nodeId);
    out.set(peer.nodeId, sealShares(key, round, self, peer.nodeId, Buffer.concat([encodeShare(sShares[i]!), encodeShare(bShares[i]!)])));
  });
  return out;
}

/** What a recipient finds in a sealed pair: (s share, b share). Throws on a forged or misaddressed ciphertext. */
export function openPeerShares(keys: RoundKeys, round: RoundId, self: string, sender: Advertised, sealed: Uint8Array): { s: Share; b: Share } {
  const key = pairShareKey(keys.cSecret, sender.cPublic, round, self, sender.nodeId);
  const plain = openShares(key, round, sender.nodeId, self, sealed);
  const half = plain.length / 2;
  return { s: decodeShare(plain.subarray(0, half)), b: decodeShare(plain.subarray(half)) };
}

/**
 * x_u: the update's values times the node's weight r = min(1, samples / maxWeight),
 * quantized, then the weight's own sample count (capped) as a plain integer in the last
 * word, so the sum carries Σ r·Δ and Σ samples and neither count is seen alone.
 */
export function encodeInput(delta: ArrayLike<number>, samples: number, maxWeight: number, q: QuantizeParams): Uint32Array {
  const capped = Math.min(samples, maxWeight);
  const r = capped / maxWeight;
  const out = new Uint32Array(delta.length + 1);
  quantize(Float64Array.from({ length: delta.length }, (_, i) => r * delta[i]!), q, out);
  out[delta.length] = capped;
  return out;
}

/** y_u, masked with b_u and the pairwise seeds shared with every other member of U2. */
export function maskedInput(x: Uint32Array, keys: RoundKeys, round: RoundId, self: string, u2: readonly Advertised[]): Uint32Array {
  const pairs = u2.filter((v) => v.nodeId !== self).map((v) => ({ sign: pairSign(self, v.nodeId), seed: pairMaskSeed(keys.sSecret, v.sPublic, round, self, v.nodeId) }));
  return maskInput(x, keys.selfSeed, pairs);
}

export class UnmaskError extends Error {}

/**
 * The sum Σ_{u∈U3} x_u from the masked inputs of U3 and, per node of U2, the shares the
 * survivors revealed (b's for survivors, s_sk's for dropouts). A rebuilt secret must match
 * what its owner advertised (b's commitment, s's public key): a forged share stops here.
 */
export function unmaskSum(p: {
  round: RoundId;
  threshold: number;
  u2: readonly Advertised[];
  masked: ReadonlyMap<string, Uint32Array>;
  revealed: ReadonlyMap<string, Share[]>;
}): Uint32Array {
  const survivors = [...p.masked.keys()];
  if (survivors.length < p.threshold) throw new UnmaskError(`only ${survivors.length} masked inputs; the threshold is ${p.threshold}`);
  const length = p.masked.get(survivors[0]!)!.length;
  const sum = new Uint32Array(length);
  for (const y of p.masked.values()) addInto(sum, y);
  for (const v of p.u2) {
    const shares = p.revealed.get(v.nodeId) ?? [];
    let secret: Buffer;
    try {
      secret = reconstruct(shares, p.threshold, 32);
    } catch (e) {
      throw new UnmaskError(`cannot rebuild the ${p.masked.has(v.nodeId) ? 'self-mask seed' : 'mask key'} of ${v.nodeId}: ${(e as Error).message}`);
    }
    if (p.masked.has(v.nodeId)) {
      if (seedCommitment(secret) !== v.selfSeedCommitment) throw new UnmaskError(`the shares of ${v.nodeId}'s self-mask seed rebuild a seed it never committed to: a share is forged`);
      addInto(sum, prgWords(secret, length), -1);
    } else {
      if (!x25519Public(secret).equals(v.sPublic)) throw new UnmaskError(`the shares of ${v.nodeId}'s mask key rebuild a key it never advertised: a share is forged`);
      // Each survivor u added pairSign(u, v)·PRG(s_uv); v never sent its input, so remove them.
      for (const u of p.u2) {
        if (!p.masked.has(u.nodeId)) continue;
        addInto(sum, prgWords(pairMaskSeed(secret, u.sPublic, p.round, v.nodeId, u.nodeId), length), pairSign(u.nodeId, v.nodeId) === 1 ? -1 : 1);
      }
    }
  }
  return sum;
}

/** Σ r_u·Δ_u and Σ samples from the unmasked sum of k inputs; the weighted mean is weighted/weights. */
export function decodeSum(sum: Uint32Array, k: number, maxWeight: number, q: QuantizeParams): { weightedDeltaSum: Float64Array; samples: number; weightSum: number } {
  const d = sum.length - 1;
  const samples = sum[d]!;
  return { weightedDeltaSum: dequantizeSum(sum.subarray(0, d), k, q), samples, weightSum: samples / maxWeight };
}

export { deriveRoundKeys };

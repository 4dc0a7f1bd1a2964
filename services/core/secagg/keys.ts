/**
 * Per-round key material, derived rather than stored: a Knative invocation keeps no state,
 * so everything a node needs in a later stage of the round is re-derived with HKDF-SHA256
 * from its long-term secret and (run, round, node). A replayed stage yields the same keys,
 * seeds and shares; other rounds' keys are independent.
 *
 *  - c key pair (X25519): agrees the AES-256-GCM key that encrypts shares sent to a peer;
 *  - s key pair (X25519): agrees the seed of the pairwise mask with a peer;
 *  - b: the self-mask seed; and the seed of the Shamir coefficients.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, createCipheriv, createDecipheriv } from 'node:crypto';

/** One attempt of one round: a retried round derives fresh keys, so nothing revealed in a failed attempt helps unmask the next. */
export interface RoundId {
  runId: string;
  round: number;
  attempt: number;
}

export interface RoundKeys {
  cSecret: Buffer;
  cPublic: Buffer;
  sSecret: Buffer;
  sPublic: Buffer;
  selfSeed: Buffer;
  coefficientSeed: Buffer;
}

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const SALT = Buffer.from('edgefl-secagg-v1');

const hkdf = (ikm: Uint8Array, info: string, length = 32) => Buffer.from(hkdfSync('sha256', ikm, SALT, info, length));
const roundInfo = (r: RoundId) => `${r.runId}\n${r.round}\n${r.attempt}`;

/** The X25519 public key of a 32-byte secret. */
export function x25519Public(secret: Uint8Array): Buffer {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' });
  return createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** X25519(secret, peerPublic): 32 bytes both sides compute alike. */
export function x25519Agree(secret: Uint8Array, peerPublic: Uint8Array): Buffer {
  if (peerPublic.length !== 32) throw new Error('an X25519 public key is 32 bytes');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519, peerPublic]), format: 'der', type: 'spki' });
  return diffieHellman({ privateKey, publicKey });
}

/** This node's keys for one round, from its long-term secret (at least 32 bytes). */
export function deriveRoundKeys(longTermSecret: Uint8Array, round: RoundId, nodeId: string): RoundKeys {
  if (longTermSecret.length < 32) throw new Error('a node long-term secret must be at least 32 bytes');
  const info = (label: string) => `${label}\n${roundInfo(round)}\n${nodeId}`;
  const cSecret = hkdf(longTermSecret, info('c-key'));
  const sSecret = hkdf(longTermSecret, info('s-key'));
  return {
    cSecret,
    cPublic: x25519Public(cSecret),
    sSecret,
    sPublic: x25519Public(sSecret),
    selfSeed: hkdf(longTermSecret, info('self-mask')),
    coefficientSeed: hkdf(longTermSecret, info('shamir')),
  };
}

const pairInfo = (label: string, round: RoundId, a: string, b: string) => `${label}\n${roundInfo(round)}\n${a < b ? `${a}\n${b}` : `${b}\n${a}`}`;

/** The seed of the mask u and v share: both derive it from their own s secret and the other's s public key. */
export function pairMaskSeed(sSecret: Uint8Array, peerSPublic: Uint8Array, round: RoundId, self: string, peer: string): Buffer {
  return hkdf(x25519Agree(sSecret, peerSPublic), pairInfo('pair-mask', round, self, peer));
}

/** The AES-256-GCM key for shares between u and v. */
export function pairShareKey(cSecret: Uint8Array, peerCPublic: Uint8Array, round: RoundId, self: string, peer: string): Buffer {
  return hkdf(x25519Agree(cSecret, peerCPublic), pairInfo('share-key', round, self, peer));
}

const shareAad = (round: RoundId, from: string, to: string) => Buffer.from(`edgefl-secagg-share\n${roundInfo(round)}\n${from}\n${to}`);

/**
 * Encrypts the shares `from` sends `to`. The nonce is fixed by the direction (one message
 * per direction per key), so a replayed stage writes the same ciphertext.
 */
export function sealShares(key: Uint8Array, round: RoundId, from: string, to: string, plaintext: Uint8Array): Buffer {
  const nonce = createHash('sha256').update(shareAad(round, from, to)).digest().subarray(0, 12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(shareAad(round, from, to));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** The plaintext of sealShares; throws when the ciphertext was altered or is for another pair or round. */
export function openShares(key: Uint8Array, round: RoundId, from: string, to: string, sealed: Uint8Array): Buffer {
  if (sealed.length < 28) throw new Error('sealed shares are too short');
  const b = Buffer.from(sealed);
  const decipher = createDecipheriv('aes-256-gcm', key, b.subarray(0, 12));
  decipher.setAAD(shareAad(round, from, to));
  decipher.setAuthTag(b.subarray(b.length - 16));
  return Buffer.concat([decipher.update(b.subarray(12, b.length - 16)), decipher.final()]);
}

/**
 * The tag a node puts on what it writes to the database (its public keys, its masked
 * input), keyed by the invocation secret it shares with the aggregator: someone who can
 * write to PostgreSQL but holds no secret cannot substitute keys or inputs unnoticed.
 */
export function messageTag(invokeSecret: string, kind: string, round: RoundId, nodeId: string, payload: Uint8Array): string {
  const digest = createHash('sha256').update(payload).digest('hex');
  return createHmac('sha256', invokeSecret).update(`edgefl-secagg-${kind}\n${roundInfo(round)}\n${nodeId}\n${digest}`).digest('base64url');
}

export const seedCommitment = (seed: Uint8Array) => createHash('sha256').update('edgefl-secagg-self-seed').update(seed).digest('hex');

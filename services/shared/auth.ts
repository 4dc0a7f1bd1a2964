import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * What an invocation token allows: one node to train one round of one run from one base
 * model version. A token captured for one of these cannot start any other training.
 */
export interface InvokeClaims {
  node: string;
  runId: string;
  round: number;
  baseVersion: number;
}

/** The signed payload; short keys keep the token small enough for a CloudEvent attribute. */
const Payload = z.object({ n: z.string(), r: z.string(), k: z.number().int(), b: z.number().int(), e: z.number().int() }).strict();

/**
 * Short-lived invocation tokens (aggregator → trainer): `v2.<payload>.<hmac>`, payload the
 * base64url JSON of the claims and the expiry, signed with the shared EDGEFL_INVOKE_SECRET.
 */
export function signInvokeToken(secret: string, claims: InvokeClaims, ttlMs = 5 * 60_000, now = Date.now()): string {
  const payload = Buffer.from(JSON.stringify({ n: claims.node, r: claims.runId, k: claims.round, b: claims.baseVersion, e: now + ttlMs })).toString('base64url');
  return `v2.${payload}.${mac(secret, payload)}`;
}

/** The claims for one round's invocation, read from the train event's data (runId, round, modelVersion). */
export function invokeClaims(node: string, data: Record<string, unknown>): InvokeClaims {
  return { node, runId: String(data.runId), round: Number(data.round), baseVersion: Number(data.modelVersion) };
}

export type TokenFailure = 'missing' | 'malformed' | 'bad_signature' | 'expired' | 'wrong_audience';
export type TokenCheck = { ok: true; claims: InvokeClaims } | { ok: false; reason: TokenFailure };

/** Checks signature, audience (this node) and expiry; what the token is for is checked by tokenMismatch. */
export function verifyInvokeToken(secret: string, token: string | undefined, audience: string, now = Date.now()): TokenCheck {
  if (!token) return { ok: false, reason: 'missing' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== 'v2' || parts[1]!.length > 2048 || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) return { ok: false, reason: 'malformed' };
  // Check the signature before anything else so an attacker learns nothing from the order of failures.
  if (!constantTimeEqual(parts[2]!, mac(secret, parts[1]!))) return { ok: false, reason: 'bad_signature' };
  let payload: z.output<typeof Payload>;
  try {
    payload = Payload.parse(JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (payload.n !== audience) return { ok: false, reason: 'wrong_audience' };
  if (payload.e < now) return { ok: false, reason: 'expired' };
  return { ok: true, claims: { node: payload.n, runId: payload.r, round: payload.k, baseVersion: payload.b } };
}

/** Why a valid token does not cover this request, or undefined when it does. */
export function tokenMismatch(claims: InvokeClaims, request: Omit<InvokeClaims, 'node'>): 'wrong_run' | 'wrong_round' | 'wrong_base_version' | undefined {
  if (claims.runId !== request.runId) return 'wrong_run';
  if (claims.round !== request.round) return 'wrong_round';
  if (claims.baseVersion !== request.baseVersion) return 'wrong_base_version';
  return undefined;
}

function mac(secret: string, payload: string): string {
  return createHmac('sha256', secret).update(`edgefl-invoke\n${payload}`).digest('base64url');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  // Compare against itself on length mismatch so timing does not reveal the length either.
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return m?.[1];
}

export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export const MIN_SECRET_LENGTH = 16;

/**
 * Why a configured secret must not be used, or undefined. The shipped manifests once held
 * `CHANGE-ME-...` values: anyone who read the repository could forge tokens with them.
 */
export function secretProblem(value: string): string | undefined {
  if (/^CHANGE-ME/i.test(value.trim())) return "is a placeholder (starts with 'CHANGE-ME'): generate one, e.g. `openssl rand -base64 32`";
  if (value.length < MIN_SECRET_LENGTH) return `is shorter than ${MIN_SECRET_LENGTH} characters: generate one, e.g. \`openssl rand -base64 32\``;
  return undefined;
}

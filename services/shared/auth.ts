import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Short-lived invocation tokens (aggregator → trainer): `v1.<audience>.<expiresAtMs>.<hmac>`
 * signed with the shared EDGEFL_INVOKE_SECRET. Audience is the node id, so a token
 * captured at one node cannot be replayed at another.
 */
export function signInvokeToken(secret: string, audience: string, ttlMs = 5 * 60_000, now = Date.now()): string {
  const expires = now + ttlMs;
  return `v1.${encodeURIComponent(audience)}.${expires}.${mac(secret, audience, expires)}`;
}

export type TokenCheck = { ok: true } | { ok: false; reason: 'missing' | 'malformed' | 'bad_signature' | 'expired' | 'wrong_audience' };

export function verifyInvokeToken(secret: string, token: string | undefined, audience: string, now = Date.now()): TokenCheck {
  if (!token) return { ok: false, reason: 'missing' };
  const parts = token.split('.');
  if (parts.length !== 4 || parts[0] !== 'v1' || !/^\d+$/.test(parts[2]!)) return { ok: false, reason: 'malformed' };
  let tokenAudience: string;
  try {
    tokenAudience = decodeURIComponent(parts[1]!);
  } catch {
    return { ok: false, reason: 'malformed' }; // a bad %-escape must be a 401, not a URIError (500)
  }
  const expires = Number(parts[2]);
  // Check the signature before anything else so an attacker learns nothing from the order of failures.
  if (!constantTimeEqual(parts[3]!, mac(secret, tokenAudience, expires))) return { ok: false, reason: 'bad_signature' };
  if (tokenAudience !== audience) return { ok: false, reason: 'wrong_audience' };
  if (expires < now) return { ok: false, reason: 'expired' };
  return { ok: true };
}

function mac(secret: string, audience: string, expires: number): string {
  return createHmac('sha256', secret).update(`${audience}\n${expires}`).digest('base64url');
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

import { describe, expect, it } from 'vitest';
import { signInvokeToken, type InvokeClaims } from '../services/shared/auth.js';
import { NODE, SECRET, authBase, data, db, expectError, postPlain, useTrainerFixture, v1 } from './helpers/trainer-fixture.js';

useTrainerFixture();

/** Rewrites a token's payload, keeping its (now wrong) signature: what a forger can do without the secret. */
function tamper(token: string, change: (payload: Record<string, unknown>) => Record<string, unknown>): string {
  const [v, payload, mac] = token.split('.');
  const changed = change(JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>);
  return `${v}.${Buffer.from(JSON.stringify(changed)).toString('base64url')}.${mac}`;
}

describe('trainer: invocation tokens', () => {
  const claims = (over: Partial<InvokeClaims> = {}): InvokeClaims => ({ node: NODE, runId: 'run-auth', round: 1, baseVersion: v1, ...over });
  const post = (token: string | undefined, round: number, over: Record<string, unknown> = {}) =>
    postPlain(data({ runId: 'run-auth', round, ...over }), token === undefined ? {} : { authorization: `Bearer ${token}` }, authBase);

  const refused: [string, () => string | undefined][] = [
    ['missing', () => undefined],
    ['not a token', () => 'hello'],
    ['signed with another secret', () => signInvokeToken('not-the-secret-at-all', claims())],
    ['expired', () => signInvokeToken(SECRET, claims(), 1000, Date.now() - 60_000)],
    ['for another node', () => signInvokeToken(SECRET, claims({ node: 'node-1' }))],
    ['for another run', () => signInvokeToken(SECRET, claims({ runId: 'run-other' }))],
    ['for another round', () => signInvokeToken(SECRET, claims({ round: 2 }))],
    ['for another base version', () => signInvokeToken(SECRET, claims({ baseVersion: v1 + 1 }))],
    ['tampered expiry', () => tamper(signInvokeToken(SECRET, claims(), 1000, Date.now() - 60_000), (p) => ({ ...p, e: Date.now() + 3_600_000 }))],
    ['tampered round', () => tamper(signInvokeToken(SECRET, claims({ round: 2 })), (p) => ({ ...p, k: 1 }))],
    ['a v1 token of the old format', () => 'v1.node-0.99999999999999.abc'],
    ['with a payload that is not base64url JSON', () => 'v2.%E0%A4%A.abc'],
  ];
  for (const [name, token] of refused) {
    it(`refuses a token that is ${name} with 401`, async () => {
      const res = await post(token(), 1);
      await expectError(res, 401, 'unauthorized');
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    });
  }

  it('refuses a non-Bearer authorization scheme', async () => {
    const res = await fetch(`${authBase}/`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Basic ${signInvokeToken(SECRET, claims())}` }, body: JSON.stringify(data({ runId: 'run-auth', round: 1 })) });
    await expectError(res, 401, 'unauthorized');
  });

  it('stored nothing for the refused requests, then trains with a valid token', async () => {
    expect(await db.pool.query('SELECT 1 FROM client_updates WHERE run_id = $1', ['run-auth'])).toHaveProperty('rowCount', 0);
    const res = await post(signInvokeToken(SECRET, claims()), 1);
    expect(res.status).toBe(201);
    expect(((await res.json()) as Record<string, unknown>).nodeId).toBe(NODE);
    expect(await db.pool.query('SELECT 1 FROM client_updates WHERE run_id = $1', ['run-auth'])).toHaveProperty('rowCount', 1);
    // Health checks need no token.
    expect((await fetch(`${authBase}/healthz`)).status).toBe(200);
    expect((await fetch(`${authBase}/readyz`)).status).toBe(200);
  });
});

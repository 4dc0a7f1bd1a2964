/**
 * The secrets-init Job's program against a fake Kubernetes API (an HTTP server that keeps
 * Secrets in a Map and enforces the bearer token and the Role's permissions).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createPool } from '../services/store/database.js';
import { NAMES, SECRET_KEYS } from '../services/kube/constants.js';
import { SECRET_NAMES, secretNames } from '../services/kube/secrets-job.js';
import { PLACEHOLDER_MARK, desiredSecrets, ensureSecrets, kubeSecretsApi, main, nodeCount, reportFailed, type ApiConnection } from '../services/kube/secrets-init.js';

const TOKEN = 'sa-token';
const NS = 'edgefl';
const store = new Map<string, Record<string, string>>(); // name → base64 data
const requests: string[] = [];
let server: http.Server;
let conn: ApiConnection;

/** What the generated Role allows for a 2-node install: create any Secret, get only edgefl's own. */
function allowed(method: string, name: string | undefined): boolean {
  if (method === 'POST') return true;
  return method === 'GET' && !!name && secretNames(2).includes(name);
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push(`${req.method} ${req.url}`);
      const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { kind: 'Status', message: 'Unauthorized' });
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(req.url ?? '');
      if (!m || m[1] !== NS) return send(404, { kind: 'Status', message: 'not found' });
      const name = m[2];
      if (!allowed(req.method!, name)) return send(403, { kind: 'Status', message: `secrets "${name}" is forbidden` });
      if (req.method === 'GET') {
        const data = store.get(name!);
        return data ? send(200, { kind: 'Secret', metadata: { name }, data }) : send(404, { kind: 'Status', message: `secrets "${name}" not found`, details: { name } });
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (store.has(body.metadata.name)) return send(409, { kind: 'Status', message: 'already exists' });
      const data = Object.fromEntries(Object.entries(body.stringData as Record<string, string>).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
      store.set(body.metadata.name, data);
      send(201, { kind: 'Secret', metadata: body.metadata });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  conn = { apiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, namespace: NS, token: TOKEN };
});
afterAll(() => new Promise((r) => server.close(r)));
beforeEach(() => {
  store.clear();
  requests.length = 0;
});

const decoded = (name: string) => Object.fromEntries(Object.entries(store.get(name) ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

describe('secrets-init', () => {
  it('creates all three Secrets with random values on a fresh install', async () => {
    const report = await ensureSecrets(kubeSecretsApi(conn));
    expect(report).toEqual({ created: SECRET_NAMES, kept: [], placeholders: [], missingKeys: [] });
    const app = decoded(NAMES.appSecret);
    expect(app[SECRET_KEYS.invokeSecret]).toMatch(/^[0-9a-f]{64}$/);
    expect(app[SECRET_KEYS.adminToken]).toMatch(/^[0-9a-f]{64}$/);
    expect(app[SECRET_KEYS.adminToken]).not.toBe(app[SECRET_KEYS.invokeSecret]);
    expect(app[SECRET_KEYS.apiKeys]).toBe('');
    expect(decoded(NAMES.postgresSecret)[SECRET_KEYS.postgresPassword]).toMatch(/^[0-9a-f]{48}$/);
    // The URL carries no password: PGPASSWORD from edgefl-postgres is the only copy.
    expect(new URL(decoded(NAMES.databaseSecret)[SECRET_KEYS.databaseUrl]!).password).toBe('');
  });

  it('two installs get different credentials', () => {
    const [a, b] = [desiredSecrets(), desiredSecrets()];
    expect(a[0]!.stringData[SECRET_KEYS.adminToken]).not.toBe(b[0]!.stringData[SECRET_KEYS.adminToken]);
    expect(a[1]!.stringData[SECRET_KEYS.postgresPassword]).not.toBe(b[1]!.stringData[SECRET_KEYS.postgresPassword]);
  });

  it("gives every edge node its own long-term secret, and a node added later gets one without touching the others'", async () => {
    const two = desiredSecrets(undefined, 2);
    expect(two.map((x) => x.name)).toEqual(secretNames(2));
    const secretOf = (i: number) => decoded(NAMES.nodeSecret(i))[SECRET_KEYS.nodeSecret];
    expect((await ensureSecrets(kubeSecretsApi(conn), desiredSecrets(undefined, 1))).created).toContain(NAMES.nodeSecret(0));
    const first = secretOf(0);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    const report = await ensureSecrets(kubeSecretsApi(conn), two);
    expect(report.created).toEqual([NAMES.nodeSecret(1)]);
    expect(secretOf(0)).toBe(first);
    expect(secretOf(1)).not.toBe(first);
    expect(nodeCount({ EDGEFL_NODES: '3' })).toBe(3);
    expect(() => nodeCount({ EDGEFL_NODES: 'x' })).toThrow(/EDGEFL_NODES/);
  });

  it('a rerun changes nothing (apply -k runs the Job again)', async () => {
    await ensureSecrets(kubeSecretsApi(conn));
    const before = structuredClone([...store]);
    const report = await ensureSecrets(kubeSecretsApi(conn));
    expect(report.created).toEqual([]);
    expect(report.kept).toEqual(SECRET_NAMES);
    expect([...store]).toEqual(before);
    expect(requests.filter((r) => r.startsWith('POST'))).toHaveLength(3);
  });

  it('losing a create race to a concurrent run counts as kept', async () => {
    const api = kubeSecretsApi(conn);
    const racing = { ...api, get: async () => undefined };
    await ensureSecrets(api);
    expect((await ensureSecrets(racing)).kept).toEqual(SECRET_NAMES);
  });

  it('an old placeholder Secret or a missing required key fails the Job and says what to do', async () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    store.set(NAMES.appSecret, { [SECRET_KEYS.invokeSecret]: b64(`${PLACEHOLDER_MARK}-invoke-secret`), [SECRET_KEYS.adminToken]: b64('x'.repeat(64)) });
    store.set(NAMES.postgresSecret, { [SECRET_KEYS.postgresUser]: b64('edgefl'), [SECRET_KEYS.postgresDb]: b64('edgefl') });
    const report = await ensureSecrets(kubeSecretsApi(conn));
    expect(report.placeholders).toEqual([NAMES.appSecret]);
    // api-keys is optional (serving reads it with optional: true); the password is not.
    expect(report.missingKeys).toEqual([`${NAMES.postgresSecret}/${SECRET_KEYS.postgresPassword}`]);
    expect(report.created).toEqual([NAMES.databaseSecret]);
    expect(reportFailed(report)).toBe(true);
    // The existing Secrets were left alone: rotation is the operator's call.
    expect(decoded(NAMES.appSecret)[SECRET_KEYS.invokeSecret]).toBe(`${PLACEHOLDER_MARK}-invoke-secret`);
    const stderr: string[] = [];
    const write = process.stderr.write;
    const out = process.stdout.write;
    process.stderr.write = ((s: string) => stderr.push(s) > 0) as typeof process.stderr.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      expect(await main(conn)).toBe(1);
    } finally {
      process.stderr.write = write;
      process.stdout.write = out;
    }
    expect(stderr.join('')).toMatch(/edgefl-secrets holds a CHANGE-ME placeholder.*Delete the Secret/);
  });

  it('API refusals surface as errors naming the Secret and the Role', async () => {
    await expect(ensureSecrets(kubeSecretsApi({ ...conn, token: 'wrong' }))).rejects.toThrow(/cannot get Secret edgefl-secrets: HTTP 401/);
    await expect(ensureSecrets(kubeSecretsApi(conn), [{ name: 'other', stringData: {} }])).rejects.toThrow(/HTTP 403 .*edgefl-secrets-init Role/);
  });
});

describe('the database credentials the workloads get', () => {
  /** Sets PGPASSWORD for the duration of `fn`, as the manifests' secretKeyRef does for the container. */
  async function withPgPassword<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
    const before = process.env.PGPASSWORD;
    if (value === undefined) delete process.env.PGPASSWORD;
    else process.env.PGPASSWORD = value;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = before;
    }
  }

  it('a passwordless DATABASE_URL connects with PGPASSWORD, and only with the right one', async () => {
    const url = new URL(inject('databaseUrl'));
    const password = decodeURIComponent(url.password);
    url.password = '';
    const tryQuery = async () => {
      const pool = createPool(url.toString(), 1);
      try {
        return (await pool.query('SELECT 1 AS ok')).rows[0].ok as number;
      } finally {
        await pool.end();
      }
    };
    expect(await withPgPassword(password, tryQuery)).toBe(1);
    await expect(withPgPassword('not-the-password', tryQuery)).rejects.toThrow(/password authentication failed/);
  });
});

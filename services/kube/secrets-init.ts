/**
 * Creates edgefl's Secrets with random values when they do not exist yet, so no install ever
 * runs on credentials that someone else has read in this repository. Runs as the Job in
 * base/secrets-init.yaml (`node dist/services/kube/secrets-init.js`) on every
 * `kubectl apply -k`; an existing Secret is never changed (rotation is a deliberate act,
 * see knative/README.md), but one still holding a placeholder or missing a key fails the Job
 * so the problem shows in `kubectl get jobs` instead of in a forged token later.
 *
 * Runtime code: no Kubernetes client library (the production image leaves out devDependencies
 * and the Job needs two calls), just the in-cluster service-account credentials.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { pathToFileURL } from 'node:url';
import { ENV } from '../shared/config.js';
import { LABELS, NAMES, PART_OF, SECRET_KEYS } from './constants.js';

/** What the old checked-in Secrets held; an existing Secret still carrying it is refused. */
export const PLACEHOLDER_MARK = 'CHANGE-ME';

export interface DesiredSecret {
  name: string;
  stringData: Record<string, string>;
}

const randomHex = (bytes: number) => randomBytes(bytes).toString('hex');

/**
 * The three Secrets every workload reads (the database password lives only in edgefl-postgres),
 * and one per edge node holding that node's long-term secret. Nodes added later get theirs on
 * the next run; an existing node's is never replaced.
 */
export function desiredSecrets(random: (bytes: number) => string = randomHex, nodes = 0): DesiredSecret[] {
  const perNode = Array.from({ length: nodes }, (_, node) => ({ name: NAMES.nodeSecret(node), stringData: { [SECRET_KEYS.nodeSecret]: random(32) } }));
  return [
    {
      name: NAMES.appSecret,
      stringData: {
        [SECRET_KEYS.invokeSecret]: random(32),
        [SECRET_KEYS.adminToken]: random(32),
        // Empty: serving is public by default (README: how to require keys or go cluster-local).
        [SECRET_KEYS.apiKeys]: '',
      },
    },
    {
      name: NAMES.postgresSecret,
      stringData: { [SECRET_KEYS.postgresUser]: 'edgefl', [SECRET_KEYS.postgresPassword]: random(24), [SECRET_KEYS.postgresDb]: 'edgefl' },
    },
    // No password in the URL: workloads get PGPASSWORD from edgefl-postgres.
    { name: NAMES.databaseSecret, stringData: { [SECRET_KEYS.databaseUrl]: `postgres://edgefl@${NAMES.postgres}:5432/edgefl` } },
    ...perNode,
  ];
}

export interface SecretsApi {
  /** The Secret's decoded data, or undefined when it does not exist. */
  get(name: string): Promise<Record<string, string> | undefined>;
  /** False when someone else created it first (409), e.g. a concurrent run of the Job. */
  create(secret: DesiredSecret): Promise<boolean>;
}

export interface EnsureReport {
  created: string[];
  kept: string[];
  /** Existing Secrets still holding a CHANGE-ME value. */
  placeholders: string[];
  /** Existing Secrets lacking keys the workloads read, as `name/key`. */
  missingKeys: string[];
}

/** Keys a workload reads with `optional: true`; an existing Secret may lack them. */
const OPTIONAL_KEYS = new Set<string>([SECRET_KEYS.apiKeys]);

export async function ensureSecrets(api: SecretsApi, desired: DesiredSecret[] = desiredSecrets()): Promise<EnsureReport> {
  const report: EnsureReport = { created: [], kept: [], placeholders: [], missingKeys: [] };
  for (const secret of desired) {
    const existing = await api.get(secret.name);
    if (!existing) {
      if (await api.create(secret)) report.created.push(secret.name);
      else report.kept.push(secret.name);
      continue;
    }
    report.kept.push(secret.name);
    if (Object.values(existing).some((v) => v.includes(PLACEHOLDER_MARK))) report.placeholders.push(secret.name);
    for (const key of Object.keys(secret.stringData)) if (!(key in existing) && !OPTIONAL_KEYS.has(key)) report.missingKeys.push(`${secret.name}/${key}`);
  }
  return report;
}

export const reportFailed = (r: EnsureReport) => r.placeholders.length > 0 || r.missingKeys.length > 0;

export interface ApiConnection {
  /** https://host:port of the API server (http:// only in tests). */
  apiUrl: string;
  namespace: string;
  token: string;
  ca?: Buffer;
}

/** Reads and creates Secrets through the Kubernetes REST API with a bearer token. */
export function kubeSecretsApi(conn: ApiConnection): SecretsApi {
  const base = `/api/v1/namespaces/${encodeURIComponent(conn.namespace)}/secrets`;
  return {
    async get(name) {
      const res = await request(conn, 'GET', `${base}/${encodeURIComponent(name)}`);
      if (res.status === 404) return undefined;
      if (res.status !== 200) throw apiError('get', name, res);
      const data = (JSON.parse(res.body) as { data?: Record<string, string> }).data ?? {};
      return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    },
    async create(secret) {
      const body = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: secret.name, namespace: conn.namespace, labels: { [LABELS.partOf]: PART_OF } },
        type: 'Opaque',
        stringData: secret.stringData,
      };
      const res = await request(conn, 'POST', base, JSON.stringify(body));
      if (res.status === 409) return false;
      if (res.status !== 201) throw apiError('create', secret.name, res);
      return true;
    },
  };
}

function apiError(verb: string, name: string, res: { status: number; body: string }): Error {
  let message = res.body.slice(0, 300);
  try {
    message = (JSON.parse(res.body) as { message?: string }).message ?? message;
  } catch {
    // not a Status object; keep the raw text
  }
  const hint = res.status === 403 ? ' (the edgefl-secrets-init Role grants create, and get on the three edgefl Secrets only)' : '';
  return new Error(`cannot ${verb} Secret ${name}: HTTP ${res.status} ${message}${hint}`);
}

function request(conn: ApiConnection, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, conn.apiUrl);
  const lib = url.protocol === 'https:' ? https : http;
  const headers: Record<string, string> = { authorization: `Bearer ${conn.token}`, accept: 'application/json' };
  if (body !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers, ca: conn.ca, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname}: no answer within 15 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The pod's own service account, as every in-cluster client finds it. */
export function inClusterConnection(env = process.env): ApiConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('KUBERNETES_SERVICE_HOST is not set: run this inside the cluster (it is the edgefl-secrets-init Job)');
  const namespace = env.EDGEFL_NAMESPACE || fs.readFileSync(`${SA_DIR}/namespace`, 'utf8').trim();
  return {
    apiUrl: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    namespace,
    token: fs.readFileSync(`${SA_DIR}/token`, 'utf8').trim(),
    ca: fs.readFileSync(`${SA_DIR}/ca.crt`),
  };
}

/** Edge nodes the Job makes secrets for: EDGEFL_NODES, set by the manifest generator. */
export function nodeCount(env = process.env): number {
  const n = Number(env[ENV.nodes] ?? '0');
  if (!Number.isInteger(n) || n < 0 || n > 1000) throw new Error(`EDGEFL_NODES must be an integer from 0 to 1000, got '${env[ENV.nodes]}'`);
  return n;
}

export async function main(conn: ApiConnection = inClusterConnection(), nodes = nodeCount()): Promise<number> {
  const report = await ensureSecrets(kubeSecretsApi(conn), desiredSecrets(randomHex, nodes));
  process.stdout.write(JSON.stringify({ msg: 'edgefl secrets checked', namespace: conn.namespace, ...report }) + '\n');
  if (!reportFailed(report)) return 0;
  process.stderr.write(
    'refusing to leave these in place: ' +
      [...report.placeholders.map((n) => `${n} holds a ${PLACEHOLDER_MARK} placeholder`), ...report.missingKeys.map((k) => `${k} is missing`)].join('; ') +
      '. Delete the Secret(s) and re-apply so this Job generates them (see knative/README.md, Secrets).\n',
  );
  return 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`edgefl secrets-init: ${err.message}\n`);
      process.exit(1);
    },
  );
}

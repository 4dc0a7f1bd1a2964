import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomSecret, secretProblem } from './auth.js';
import { ConfigError, ENV, type Config, type Role } from './config.js';

/** The secrets every local process shares: `edgefl up` and each function run alone against the embedded database. */
export interface LocalSecrets {
  invokeSecret: string;
  adminToken: string;
}

export const LOCAL_SECRETS_FILE = 'secrets.json';

/**
 * Reads `<dataDir>/secrets.json`, creating it (mode 0600) on first use. Creation links a
 * finished temporary file into place, so two functions starting at once cannot both win
 * or read a half-written file.
 */
export function localSecrets(dataDir: string): LocalSecrets & { file: string } {
  const file = path.join(dataDir, LOCAL_SECRETS_FILE);
  const existing = readSecrets(file);
  if (existing) return { ...existing, file };
  createOnce(file, JSON.stringify({ invokeSecret: randomSecret(), adminToken: randomSecret(24) }, null, 2) + '\n');
  const created = readSecrets(file);
  if (!created) throw new ConfigError(`${file} does not hold invokeSecret and adminToken; delete it to generate new ones`);
  return { ...created, file };
}

/** Writes `text` to `file` (mode 0600) unless it exists: a finished temporary file is linked into place, so concurrent creators never see a half-written file and the first one wins. */
export function createOnce(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  try {
    linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readSecrets(file: string): LocalSecrets | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const o = JSON.parse(text) as Partial<LocalSecrets>;
  if (typeof o.invokeSecret !== 'string' || typeof o.adminToken !== 'string') return undefined;
  return { invokeSecret: o.invokeSecret, adminToken: o.adminToken };
}

/** How a service authenticates what it must, as it reports it on its status route. */
export interface ServiceAuth {
  invokeSecret?: string;
  adminToken?: string;
  /** True only when the user opted out (--insecure / EDGEFL_INSECURE=1) and a secret is missing. */
  insecure: boolean;
  /** Where the secrets came from. */
  source: 'environment' | 'data-dir' | 'none';
  secretsFile?: string;
}

const NEEDS: Record<Role, ('invokeSecret' | 'adminToken')[]> = { trainer: ['invokeSecret'], aggregator: ['invokeSecret', 'adminToken'], serving: [] };

/**
 * Fails closed: a trainer needs EDGEFL_INVOKE_SECRET, an aggregator also EDGEFL_ADMIN_TOKEN.
 * Missing ones come from the data directory when the database is the embedded one (one
 * machine, one user), and are otherwise a start-up error unless the user opted out.
 * Placeholder or short values are refused whatever else is set.
 */
export function resolveAuth(cfg: Config, role: Role): ServiceAuth {
  for (const key of NEEDS[role]) {
    const problem = cfg[key] === undefined ? undefined : secretProblem(cfg[key]);
    if (problem) throw new ConfigError(`${ENV[key]} ${problem}`);
  }
  for (const apiKey of role === 'serving' ? cfg.apiKeys : []) {
    const problem = secretProblem(apiKey);
    if (problem) throw new ConfigError(`a key in ${ENV.apiKeys} ${problem}`);
  }
  const auth: ServiceAuth = { invokeSecret: cfg.invokeSecret, adminToken: cfg.adminToken, insecure: false, source: 'environment' };
  const missing = NEEDS[role].filter((key) => !auth[key]);
  if (missing.length === 0) return auth;
  if (cfg.insecure) return { ...auth, insecure: true, source: NEEDS[role].some((key) => auth[key]) ? 'environment' : 'none' };
  if (!cfg.databaseUrl) {
    const local = localSecrets(cfg.dataDir);
    for (const key of missing) auth[key] = local[key];
    return { ...auth, source: 'data-dir', secretsFile: local.file };
  }
  const names = missing.map((k) => ENV[k]).join(' and ');
  throw new ConfigError(
    `${names} ${missing.length > 1 ? 'are' : 'is'} not set: this ${role} refuses to start unauthenticated. ` +
      `Set ${missing.length > 1 ? 'them' : 'it'} (e.g. \`openssl rand -base64 32\`), or opt out explicitly with --insecure (${ENV.insecure}=1)`,
  );
}

/** The start-up log line that says how this service is protected (never the secrets themselves). */
export function describeAuth(role: Role, auth: ServiceAuth): { level: 'info' | 'warn'; msg: string; fields: Record<string, unknown> } {
  const fields = { insecure: auth.insecure, secrets: auth.source, ...(auth.secretsFile ? { secrets_file: auth.secretsFile } : {}) };
  if (!auth.insecure) return { level: 'info', msg: `${role} authentication on`, fields };
  const open = role === 'trainer' ? 'anyone who can reach this port can make it train' : 'anyone who can reach this port can start and stop runs';
  return { level: 'warn', msg: `INSECURE: authentication is off (--insecure); ${open}`, fields };
}

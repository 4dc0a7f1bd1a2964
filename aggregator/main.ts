import { initBackend } from '../services/core/backend.js';
import type { Config } from '../services/shared/config.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics } from '../services/shared/metrics.js';
import { loadHeldOut } from '../services/core/node-data.js';
import { listen } from '../services/http/runtime.js';
import { openDatabase } from '../services/store/database.js';
import { createAggregatorApp } from './app.js';
import { Federation } from './federation.js';
import { trainerSource } from './trainers.js';
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
  const metrics = createMetrics('aggregator');
  await initBackend(cfg.backend, (m) => log.info(m));
  const heldOut = loadHeldOut(cfg);
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => log.info(m), stopEmbeddedOnClose: true });
  const trainers = trainerSource(cfg, log);
  const federation = new Federation({ pool: db.pool, log, heldOut, trainers, invokeSecret: cfg.invokeSecret, metrics, brokerUrl: cfg.eventSink });
  if (cfg.eventSink) log.info('rounds travel through Knative Eventing', { broker: cfg.eventSink });
  const app = createAggregatorApp({
    pool: db.pool,
    federation,
    log,
    adminToken: cfg.adminToken,
    trainers,
    servingUrls: () => cfg.servingUrls,
    runDefaults: opts.runDefaults,
    metrics,
    deadLetter: { brokerUrl: cfg.eventSink, invokeSecret: cfg.invokeSecret },
    mount: opts.mount,
  });
  const server = await listen(app, cfg.port, log, async () => {
    await federation.shutdown();
    await db.close();
  }, opts.handleSignals ?? true);
  const resumed = await federation.resumeAll();
  if (resumed.length) log.info('resumed runs', { runs: resumed });
  return { server, db, federation, app, log };
}

import express, { type NextFunction, type Request, type Response } from 'express';
import type pg from 'pg';
import { bearerToken, constantTimeEqual } from '../services/shared/auth.js';
import { HttpError, notFound } from '../services/http/errors.js';
import { applyCommonMiddleware, applyErrorHandlers } from '../services/http/common.js';
import type { Logger } from '../services/shared/log.js';
import { createMetrics, type Metrics } from '../services/shared/metrics.js';
import * as store from '../services/store/model-store.js';
import type { Federation, RoundSummary } from './federation.js';
import type { TrainerTarget } from './invoke.js';
import { parseRunConfig, unreachableQuorum, type RunConfig } from './run-config.js';
import { EVENT_TYPES, readEvent } from '../services/http/cloudevents.js';
import { mountModelRoutes } from './model-routes.js';
import { predictionRoutes } from './prediction-routes.js';
import { applyRetention, retentionFromEnv, type RetentionPolicy } from '../services/store/retention.js';
import { EVENTING } from '../services/kube/constants.js';
import { deadLetterHandlers, type DeadLetterOptions } from './dead-letter.js';
import { privacyView, runPrivacyProblems } from './privacy-budget.js';
import { asyncSummary } from '../services/store/async-updates.js';

export interface AggregatorDeps {
  pool: pg.Pool;
  federation: Federation;
  log: Logger;
  adminToken?: string;
  trainers: () => Promise<TrainerTarget[]>;
  servingUrls: () => string[];
  runDefaults?: Partial<RunConfig>;
  /** The longest roundTimeoutS a run may ask for (the trainers' request timeout); unset: no limit beyond the schema's. */
  maxRoundTimeoutS?: number;
  metrics?: Metrics;
  /** Dead-letter sink settings (broker URL, invoke secret) for undeliverable round events. */
  deadLetter?: Omit<DeadLetterOptions, 'metrics' | 'log'>;
  /** Extra routes (the dashboard) mounted before the 404 handler. */
  mount?: (app: express.Express) => void;
  /** Retention applied after every finished run (default: EDGEFL_RETENTION; unset: only on POST /models/prune). */
  retention?: RetentionPolicy;
}

/** Run ids are generated here; anything else (a NUL byte PostgreSQL rejects with an error, a 10 kB path) is simply not a run. */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function createAggregatorApp(deps: AggregatorDeps) {
  const metrics = deps.metrics ?? createMetrics('aggregator');
  const app = express();
  applyCommonMiddleware(app, deps.log, metrics);
  const json = express.json({ limit: '256kb' });

  const requireAdmin = (req: Request, _res: Response, next: NextFunction) => {
    if (!deps.adminToken) return next();
    const token = bearerToken(req.get('authorization'));
    if (token && constantTimeEqual(token, deps.adminToken)) return next();
    next(new HttpError(401, 'unauthorized', 'this route needs the admin token (Authorization: Bearer <EDGEFL_ADMIN_TOKEN>)', { 'WWW-Authenticate': 'Bearer' }));
  };

  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    await deps.pool.query('SELECT 1');
    res.json({ status: 'ready' });
  });

  app.post('/runs', requireAdmin, json, async (req, res) => {
    const config = parseRunConfig(req.body ?? {}, deps.runDefaults);
    const trainers = await deps.trainers();
    const usable = config.nodes ? trainers.filter((t) => config.nodes!.includes(t.nodeId)) : trainers;
    if (config.nodes) {
      const unknown = config.nodes.filter((n) => !trainers.some((t) => t.nodeId === n));
      if (unknown.length) throw new HttpError(422, 'unknown_nodes', `no trainer known for: ${unknown.join(', ')}`);
    }
    if (usable.length === 0) throw new HttpError(409, 'no_trainers', 'no trainer endpoints are known (EDGEFL_TRAINER_URLS or cluster discovery)');
    const unreachable = unreachableQuorum(config, usable.length);
    if (unreachable) throw new HttpError(422, 'quorum_unreachable', unreachable);
    if (deps.maxRoundTimeoutS !== undefined && config.roundTimeoutS > deps.maxRoundTimeoutS) {
      throw new HttpError(422, 'round_timeout_too_long', `roundTimeoutS ${config.roundTimeoutS} exceeds the trainers' request timeout of ${deps.maxRoundTimeoutS} s (EDGEFL_MAX_ROUND_TIMEOUT_S): Knative would cut the trainer's request before the round's deadline`);
    }
    const privacyProblems = await runPrivacyProblems(deps.pool, config, usable);
    if (privacyProblems.length) throw new HttpError(400, 'impossible_privacy', privacyProblems.join('; '));
    const run = await deps.federation.startRun(config);
    res.status(201).location(`/runs/${run.id}`).json(await runView(run.id));
  });
  app.get('/runs', async (_req, res) => {
    const runs = await store.listRuns(deps.pool);
    res.json({ runs: runs.map(runSummary) });
  });
  app.get('/runs/:id', async (req, res) => {
    const view = RUN_ID.test(String(req.params.id)) ? await runView(String(req.params.id)) : undefined;
    if (!view) throw notFound('run_not_found', `no run '${req.params.id}'`);
    res.json(view);
  });
  const runningRun = async (id: string) => {
    const run = RUN_ID.test(id) ? await store.getRun(deps.pool, id) : undefined;
    if (!run) throw notFound('run_not_found', `no run '${id}'`);
    if (run.status !== 'running') throw new HttpError(409, 'run_not_running', `run is already ${run.status}`);
    return run;
  };
  /** Stops after the current round: that round still completes (or fails) and publishes as usual. */
  app.post('/runs/:id/stop', requireAdmin, async (req, res) => {
    const run = await runningRun(String(req.params.id));
    await deps.federation.stop(run.id);
    res.status(202).json({ id: run.id, stopRequested: true });
  });
  /** Stops now: the round in progress is closed as failed and publishes nothing. */
  app.post('/runs/:id/abort', requireAdmin, async (req, res) => {
    const run = await runningRun(String(req.params.id));
    await deps.federation.abort(run.id);
    res.status(202).json({ id: run.id, aborted: true });
  });
  /** Server-sent events: every round summary and run status change, for the dashboard. */
  app.get('/events', (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.write(': connected\n\n');
    const send = (type: string) => (data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    const onRound = send('round');
    const onRun = send('run');
    const onStart = send('round-start');
    deps.federation.on('round', onRound);
    deps.federation.on('run', onRun);
    deps.federation.on('round-start', onStart);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(ping);
      deps.federation.off('round', onRound);
      deps.federation.off('run', onRun);
      deps.federation.off('round-start', onStart);
    });
  });

  /**
   * Knative Eventing delivers the trainers' dev.edgefl.update.ready replies here. The round
   * loop reads updates from the store, so this only validates, logs and acknowledges.
   */
  app.post('/events', express.raw({ type: () => true, limit: '64kb' }), (req, res) => {
    const event = readEvent(req.headers, Buffer.isBuffer(req.body) ? req.body : undefined, EVENT_TYPES.updateReady);
    const data = (event.data ?? {}) as Record<string, unknown>;
    req.log.info('update event received', { event_id: event.id, source: event.source, run_id: data.runId, round: data.round, node: data.nodeId, update_id: data.updateId });
    res.status(202).end();
  });

  /** Knative Triggers dead-letter undeliverable round.train events here (aggregator/dead-letter.ts). */
  app.post(EVENTING.deadLetterPath, ...deadLetterHandlers({ ...deps.deadLetter, metrics, log: deps.log }));

  const retention = deps.retention ?? retentionFromEnv(process.env.EDGEFL_RETENTION);
  if (retention) {
    deps.federation.on('run', (run: store.RunRow) => {
      if (run.status === 'running') return;
      applyRetention(deps.pool, retention, false).then(
        (r) => deps.log.info('retention applied', { run_id: run.id, pruned_versions: r.prunedVersions, pruned_updates: r.prunedUpdates, freed_bytes: r.prunedModelBytes + r.prunedUpdateBytes }),
        (e) => deps.log.warn('retention failed', { err: e }),
      );
    });
  }
  mountModelRoutes(app, {
    pool: deps.pool,
    requireAdmin,
    metrics,
    nodeIds: async () => (await deps.trainers()).map((t) => t.nodeId),
  });
  app.get('/models/:version', async (req, res) => {
    const version = Number(req.params.version);
    if (!Number.isSafeInteger(version) || version < 1) throw new HttpError(400, 'invalid_version', 'version must be a positive integer');
    if (req.query.format === 'bin') {
      const model = await store.getModel(deps.pool, version);
      if (!model) throw notFound('model_not_found', `no model version ${version}`);
      if (model.prunedAt) throw new HttpError(410, 'model_pruned', `model version ${version} was pruned by retention; its weights are gone`);
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Disposition', `attachment; filename="edgefl-mnist-v${version}.eflw"`);
      res.setHeader('X-Checksum-SHA256', model.checksum);
      return void res.send(model.bytes);
    }
    if (req.query.format !== undefined && req.query.format !== 'json') throw new HttpError(400, 'invalid_format', 'format must be json or bin');
    const meta = await store.getModelMeta(deps.pool, version);
    if (!meta) throw notFound('model_not_found', `no model version ${version}`);
    res.json(meta);
  });
  app.get('/nodes', async (_req, res) => {
    const [known, trainers] = await Promise.all([store.listNodes(deps.pool), deps.trainers()]);
    res.json({
      nodes: trainers.map((t, i) => ({ ...known.find((k) => k.id === t.nodeId), id: t.nodeId, trainerUrl: t.url, servingUrl: deps.servingUrls()[i] ?? null })),
    });
  });

  app.use(predictionRoutes(deps.pool));
  deps.mount?.(app);
  applyErrorHandlers(app, deps.log);
  return app;

  async function runView(id: string) {
    const run = await store.getRun(deps.pool, id);
    if (!run) return undefined;
    const rounds = await store.listRounds(deps.pool, id);
    return {
      ...runSummary(run),
      config: run.config,
      /** Asynchronous runs (fedbuff): aggregations, staleness histogram and mean, updates discarded as stale. */
      async: (await asyncSummary(deps.pool, id)) ?? null,
      privacy: (await privacyView(deps.pool, run.config as RunConfig, rounds.filter((r) => r.status === 'completed').length, [...new Set(rounds.flatMap((r) => r.selected))], id)) ?? null,
      rounds: rounds.map((r) => ({
        round: r.round,
        status: r.status,
        attempt: r.attempt,
        baseVersion: r.baseVersion,
        modelVersion: r.globalVersion,
        selected: r.selected,
        quorum: r.quorum,
        deadline: r.deadline,
        startedAt: r.startedAt,
        finishedAt: r.finishedAt,
        ...(r.metrics as Partial<RoundSummary>),
      })),
    };
  }
}

function runSummary(run: store.RunRow) {
  return {
    id: run.id,
    status: run.status,
    stopReason: run.stopReason,
    currentRound: run.currentRound,
    bestAccuracy: run.bestAccuracy,
    latestVersion: run.latestVersion,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
  };
}

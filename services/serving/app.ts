import express, { type Request, type Response } from 'express';
import type pg from 'pg';
import type { RequestListener } from 'node:http';
import { applyCommonMiddleware, applyErrorHandlers, SECURITY_HEADERS } from '../http/common.js';
import { PIXELS } from '../core/model.js';
import { ENV } from '../shared/config.js';
import type { Logger } from '../shared/log.js';
import { createMetrics, type Metrics } from '../shared/metrics.js';
import { fullCollection, WorkBudget } from './admission.js';
import { IdleTrim } from './idle-trim.js';
import type { JsonBodyLimits } from './body.js';
import { inferenceEventsRouter } from './inference-events.js';
import { detectMemoryLimit, heapBoundedFor, servingLimits, type ServingLimits } from './limits.js';
import type { ModelHolder } from './model-holder.js';
import { directPredict } from './direct-predict.js';
import { oipDirectRoutes, oipRouter } from './oip.js';
import { Predictor } from './predictor.js';
import { tfServingDirectRoutes, tfServingRouter } from './tfserving.js';
import { mountUpload } from './upload.js';

export interface ServingDeps {
  holder: ModelHolder;
  log: Logger;
  nodeId: string;
  /** Configured limits (EDGEFL_MAX_BATCH, EDGEFL_MAX_BODY_BYTES); the memory limit can only lower them. */
  maxBatch: number;
  maxBodyBytes: number;
  apiKeys?: string[];
  metrics?: Metrics;
  /** Derived from the cgroup limit or EDGEFL_MEMORY_LIMIT_MIB when not given. */
  limits?: ServingLimits;
  /** With a database, the event-driven path (inference-events.ts) is mounted: POST / and /v1/predictions. */
  pool?: pg.Pool;
  /** Where object references of inference events resolve (EDGEFL_OBJECT_ROOT); unset: inline images only. */
  objectRoot?: string;
  /** false: the prediction routes too go through Express (test/direct-predict.test.ts compares the two). */
  direct?: boolean;
}

/**
 * The model-serving function: one predictor, and thin adapters for the TensorFlow Serving
 * REST API (tfserving.ts), the Open Inference Protocol (oip.ts) and image upload
 * (upload.ts). Every response names the model version that produced it (body and
 * X-Model-Version header). Request memory is bounded by limits derived from the function's
 * memory limit (limits.ts), with load shedding when requests in flight would exceed it.
 */
export function createServingApp(deps: ServingDeps): ServingApp {
  const metrics = deps.metrics ?? createMetrics('serving');
  const limits = deps.limits ?? servingLimits(detectMemoryLimit(), deps, { bodyLimitExplicit: Boolean(process.env[ENV.maxBodyBytes]) });
  const predictor = new Predictor(() => deps.holder.current, { chunk: limits.predictChunk, metrics });
  // Forced full collections only where V8 was not given a heap sized for the pod (they stall the event loop).
  const budget = heapBoundedFor(limits.memory.mib) ? new WorkBudget(limits.workBudgetBytes, () => {}) : new WorkBudget(limits.workBudgetBytes);
  const body: JsonBodyLimits = { maxBodyBytes: limits.maxBodyBytes, maxValues: limits.maxBatch * PIXELS + 64, maxContainers: limits.maxContainers };
  deps.log.info('serving limits', {
    memory_limit_mib: limits.memory.mib,
    memory_limit_source: limits.memory.source,
    work_budget_mib: Math.round(limits.workBudgetBytes / 2 ** 20),
    max_body_bytes: limits.maxBodyBytes,
    max_batch: limits.maxBatch,
    image_pixel_budget: limits.imagePixelBudget,
  });
  const shared = { predictor, log: deps.log, maxBatch: limits.maxBatch, body, budget, apiKeys: deps.apiKeys };

  const app = express();
  applyCommonMiddleware(app, deps.log, metrics);
  const trim = new IdleTrim(fullCollection());
  app.use((_req, res, next) => {
    trim.started();
    res.once('close', () => trim.ended());
    for (const name in CORS_HEADERS) res.setHeader(name, CORS_HEADERS[name]!);
    next();
  });
  app.options(/.*/, (_req, res) => void res.status(204).end());

  const live = (_req: Request, res: Response) => void res.json({ live: true });
  // Readiness never waits for predictions: it reads one field, and predictions yield between chunks.
  // The protocol's probe also says whether this node serves a canary; /readyz keeps its plain body.
  const ready = (withCanary: boolean) => (_req: Request, res: Response) => {
    const m = predictor.current;
    if (!m) return void res.status(503).json({ ready: false, error: 'no model version is loaded yet' });
    res.json({ ready: true, model_version: String(m.version), ...(withCanary ? { canary: m.canary === true } : {}) });
  };
  app.get('/healthz', live);
  app.get('/v2/health/live', live);
  app.get('/readyz', ready(false));
  app.get('/v2/health/ready', ready(true));

  if (deps.pool) {
    const objectRoot = deps.objectRoot;
    app.use(inferenceEventsRouter({ ...shared, pool: deps.pool, nodeId: deps.nodeId, maxBodyBytes: limits.maxBodyBytes, imagePixelBudget: limits.imagePixelBudget, objectRoot }));
  }
  const upload = mountUpload({ ...shared, maxBodyBytes: limits.maxBodyBytes, imagePixelBudget: limits.imagePixelBudget });
  app.use('/v1', tfServingRouter({ ...shared, nodeId: deps.nodeId }, upload));
  app.use('/v2', oipRouter(shared));

  applyErrorHandlers(app, deps.log);

  // The prediction routes are answered without Express (direct-predict.ts); all else by the app.
  const direct = directPredict([...tfServingDirectRoutes(shared), ...oipDirectRoutes(shared)], {
    log: deps.log,
    metrics,
    apiKeys: deps.apiKeys,
    trim,
    headers: { ...SECURITY_HEADERS, ...CORS_HEADERS },
  });
  if (deps.direct === false) return app;
  return (req, res) => {
    if (!direct(req, res)) app(req, res);
  };
}

/** The serving function's HTTP handler (a Knative function's `handle`): listen with it, or pass it to http.createServer. */
export type ServingApp = RequestListener;

const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'Content-Type, Authorization, X-API-Key, Inference-Header-Content-Length',
};


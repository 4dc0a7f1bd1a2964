import express from 'express';
import type pg from 'pg';
import { bearerToken, tokenMismatch, verifyInvokeToken } from '../shared/auth.js';
import { encodeStoredWeights, decodeWeights, sha256Hex } from '../core/codec.js';
import { AUTH_EXTENSION, EVENT_TYPES, encodeEvent, makeEvent, readEvent, type EventMode } from '../http/cloudevents.js';
import { HttpError, conflict } from '../http/errors.js';
import { applyCommonMiddleware, applyErrorHandlers } from '../http/common.js';
import type { Logger } from '../shared/log.js';
import { createMetrics, type Metrics } from '../shared/metrics.js';
import { getFlatWeights, modelSpec, setFlatWeights, type TensorSpec } from '../core/model.js';
import { TrainerModels, type NodeData } from './run-model.js';
import type { ModelSpec } from '../core/model-spec.js';
import type { tfl } from '../core/tf.js';
import { trainLocal } from '../core/train.js';
import { privacyMetrics, trainWithPrivacy } from './private-round.js';
import type { ImageSet } from '../../datasets/types.js';
import { findUpdate, getModel, getRound, insertUpdate, type UpdateMeta } from '../store/model-store.js';
import { MAX_BATCH_SIZE, parseTrainRequest, refuseBatchAboveMemory, type TrainRequest } from './train-request.js';
import { REFERENCE_CNN } from '../core/model-spec.js';
import { sendStageReply, runSecaggStage, storeMaskedInput } from './secagg-round.js';
import { deviceDraw, emulateDevice, type Device } from './device-profile.js';

export interface TrainerDeps {
  pool: pg.Pool;
  nodeId: string;
  shard: ImageSet;
  model: tfl.LayersModel;
  log: Logger;
  /** Undefined only when the user opted out of authentication (--insecure): then anyone may make it train. */
  invokeSecret?: string;
  maxBodyBytes?: number;
  /** The largest batchSize this trainer's memory allows (default MAX_BATCH_SIZE); a function: for the run's model. */
  maxBatchSize?: number | ((spec: ModelSpec) => number);
  metrics?: Metrics;
  /** This node's own data shaped for a model (services/trainer/run-model.ts); unset: `shard` as it is. */
  dataFor?: (spec: ModelSpec) => NodeData;
  /** The node's long-term secret (services/shared/node-secret.ts); without it the node refuses secure-aggregation rounds. */
  nodeSecret?: Buffer;
  /** An emulated slow or flaky device (services/trainer/device-profile.ts); undefined for a plain one. */
  device?: Device;
}

/** Seconds the caller should wait when this instance is busy: about one training's length. */
const DEFAULT_RETRY_AFTER_S = 5;

/**
 * The model-training function. One training at a time (Knative containerConcurrency 1
 * enforces the same in a cluster); a second request gets 429 with Retry-After.
 *
 * Status codes follow the Knative Eventing data-plane contract, which brokers apply to
 * every delivery: 200 with the reply event for a CloudEvent (a fresh update or a replay);
 * 410 for a round that is closed or past its deadline (non-retryable: redelivering cannot
 * help); 409 for the same (run, round, node) asked from another base version; 429 while
 * busy (retryable). Plain-JSON callers get 201 for a fresh update, 200 for a replay.
 */
export function createTrainerApp(deps: TrainerDeps) {
  const metrics = deps.metrics ?? createMetrics('trainer');
  const app = express();
  applyCommonMiddleware(app, deps.log, metrics);
  let busy: { runId: string; round: number; since: number } | undefined;
  let lastDurationS = DEFAULT_RETRY_AFTER_S;
  const cached: { version?: number; flat?: Float32Array } = {};
  const source = `/edgefl/trainer/${deps.nodeId}`;
  const runModels = new TrainerModels(deps);
  const secagg = { pool: deps.pool, nodeId: deps.nodeId, invokeSecret: deps.invokeSecret, nodeSecret: deps.nodeSecret, sampleCount: deps.shard.count };
  let attempts = 0;

  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', (_req, res) => void res.json({ status: 'ready', node: deps.nodeId, busy: Boolean(busy), samples: deps.shard.count }));
  const batchCap = deps.maxBatchSize ?? MAX_BATCH_SIZE;
  // A per-model cap is checked once the run's model is known (trainRound); GET / shows the reference CNN's.
  const maxBatchSize = typeof batchCap === 'number' ? batchCap : batchCap(REFERENCE_CNN);
  app.get('/', (_req, res) =>
    void res.json({ service: 'edgefl-trainer', node: deps.nodeId, samples: deps.shard.count, busy: busy ?? null, insecure: !deps.invokeSecret, maxBatchSize }),
  );

  app.post('/', express.raw({ type: () => true, limit: deps.maxBodyBytes ?? 1024 * 1024 }), async (req, res, next) => {
    try {
      const headerToken = bearerToken(req.get('authorization'));
      const structured = String(req.get('content-type') ?? '').startsWith('application/cloudevents+json');
      // Without a header token, only a CloudEvent can still carry one (Broker delivery): refuse early otherwise.
      if (deps.invokeSecret && !headerToken && !structured && !req.get(`ce-${AUTH_EXTENSION}`)) throw unauthorized('missing');
      const event = readEvent(req.headers, Buffer.isBuffer(req.body) ? req.body : undefined, EVENT_TYPES.roundTrain);
      const check = deps.invokeSecret ? verifyInvokeToken(deps.invokeSecret, headerToken ?? event.auth, deps.nodeId) : undefined;
      if (check && !check.ok) throw unauthorized(check.reason);
      const request = parseTrainRequest(event.data, { maxBatchSize: typeof batchCap === 'number' ? batchCap : MAX_BATCH_SIZE });
      // A token is for one (run, round, base version): replaying it for anything else is refused.
      const mismatch = check?.ok ? tokenMismatch(check.claims, { runId: request.runId, round: request.round, baseVersion: request.modelVersion }) : undefined;
      if (mismatch) throw unauthorized(mismatch);
      const log = req.log.child({ run_id: request.runId, round: request.round, event_id: event.id });

      const existing = await findUpdate(deps.pool, request.runId, request.round, deps.nodeId);
      if (existing) {
        refuseOtherBase(existing, request);
        log.info('round already trained here; returning the stored update', { update_id: existing.id });
        return reply(res, event.mode, existing, false);
      }
      await refuseClosedRound(deps.pool, request);
      const staged = request.secagg ? await runSecaggStage(secagg, { ...request, secagg: request.secagg }, log) : undefined;
      if (staged) return sendStageReply(res, source, request, staged, event.mode);
      if (busy) {
        const retry = Math.max(1, Math.ceil(lastDurationS - (Date.now() - busy.since) / 1000));
        throw new HttpError(429, 'busy', `node ${deps.nodeId} is training run ${busy.runId} round ${busy.round}`, { 'Retry-After': String(retry) });
      }
      busy = { runId: request.runId, round: request.round, since: Date.now() };
      try {
        const update = await trainRound(request, log);
        metrics.trainingSeconds.observe(update.durationMs / 1000);
        metrics.trainingSamplesPerSecond.set(Number(update.metrics.samplesPerSecond ?? 0));
        lastDurationS = update.durationMs / 1000;
        reply(res, event.mode, update, true);
      } finally {
        busy = undefined;
      }
    } catch (e) {
      next(e);
    }
  });

  async function loadGlobal(version: number, tensors: TensorSpec[]): Promise<Float32Array> {
    if (cached.version === version && cached.flat) return cached.flat;
    const row = await getModel(deps.pool, version);
    // 422, not 404: the Eventing contract makes 404 retryable, and the version will not appear by waiting.
    if (!row) throw new HttpError(422, 'model_version_not_found', `global model version ${version} does not exist`);
    if (sha256Hex(row.bytes) !== row.checksum) throw new HttpError(422, 'model_checksum_mismatch', `global model version ${version} does not match its stored checksum; refusing to train from it`);
    const decoded = decodeWeights(row.bytes, tensors);
    cached.version = version;
    cached.flat = decoded.flat;
    return decoded.flat;
  }

  async function trainRound(request: TrainRequest, log: Logger): Promise<UpdateMeta> {
    const { model, tensors, data, spec } = await runModels.forRun(request.runId);
    if (typeof batchCap === 'function') refuseBatchAboveMemory(request.batchSize, batchCap(spec));
    const global = await loadGlobal(request.modelVersion, tensors);
    setFlatWeights(model, global);
    log.info('training started', { model_version: request.modelVersion, epochs: request.epochs, samples: data.set.count });
    const train = request.dp?.mode === 'local' ? trainWithPrivacy(deps.pool, deps.nodeId, request, request.dp) : trainLocal;
    const result = await train(model, data.set, {
      epochs: request.epochs,
      batchSize: request.batchSize,
      learningRate: request.learningRate,
      optimizer: request.optimizer,
      proximalMu: request.proximalMu,
      seed: request.seed * 7919 + request.round,
      dropout: { runSeed: request.seed, node: deps.nodeId, round: request.round },
      shouldStop: () => Date.now() > request.deadline.getTime(),
    });
    if (result.stopped) {
      // Nothing partial is stored: the aggregator has moved on without this node.
      throw gone('deadline_passed', `round ${request.round} passed its deadline during training; update discarded`);
    }
    await emulateDevice(deps.device, result.durationMs, deviceDraw(deps.nodeId, request.seed, request.round, attempts++), request.deadline);
    const { bytes, checksum } = encodeStoredWeights(modelSpec(model), getFlatWeights(model));
    const metricsOut = {
      loss: result.loss,
      accuracy: result.accuracy,
      samples: result.samples,
      epochs: result.epochs,
      durationMs: Math.round(result.durationMs),
      samplesPerSecond: Math.round(result.samplesPerSecond),
      ...privacyMetrics(result),
      ...(data.skipped ? { skippedFiles: data.skipped } : {}),
    };
    // Secure aggregation: only the masked form of the update is stored.
    if (request.secagg) return storeMaskedInput({ ...secagg, sampleCount: data.set.count }, { ...request, secagg: request.secagg }, global, getFlatWeights(model), metricsOut, result.durationMs);
    const { update, created } = await insertUpdate(deps.pool, {
      runId: request.runId,
      round: request.round,
      nodeId: deps.nodeId,
      baseVersion: request.modelVersion,
      bytes,
      checksum,
      sampleCount: data.set.count,
      metrics: metricsOut,
      durationMs: result.durationMs,
    });
    if (!created) refuseOtherBase(update, request);
    log.info(created ? 'update stored' : 'update already stored by a concurrent request', { update_id: update.id, ...metricsOut });
    return update;
  }

  function reply(res: express.Response, mode: EventMode, update: UpdateMeta, created: boolean) {
    const event = makeEvent(EVENT_TYPES.updateReady, source, {
      updateId: update.id,
      runId: update.runId,
      round: update.round,
      nodeId: update.nodeId,
      baseVersion: update.baseVersion,
      sampleCount: update.sampleCount,
      checksum: update.checksum,
      metrics: update.metrics,
      created,
    });
    const out = encodeEvent(event, mode);
    // The data-plane contract defines a reply event on 200 only; plain-JSON callers get REST's 201 for a new update.
    res.status(created && mode === 'plain' ? 201 : 200).set(out.headers).send(out.body);
  }

  applyErrorHandlers(app, deps.log);
  return app;
}

function unauthorized(reason: string): HttpError {
  return new HttpError(401, 'unauthorized', `invocation token ${reason.replaceAll('_', ' ')}`, { 'WWW-Authenticate': 'Bearer' });
}

/** 410 Gone: the round will not take this update; a broker must not redeliver (unlike 409). */
const gone = (code: string, message: string) => new HttpError(410, code, message);

/** The same (run, round, node) from another base model is another training, not a replay. */
function refuseOtherBase(stored: UpdateMeta, request: TrainRequest): void {
  if (stored.baseVersion !== request.modelVersion) {
    throw conflict('base_version_conflict', `node already trained round ${request.round} of run ${request.runId} from model version ${stored.baseVersion}, not ${request.modelVersion}`);
  }
}

async function refuseClosedRound(pool: pg.Pool, request: TrainRequest): Promise<void> {
  if (Date.now() > request.deadline.getTime()) throw gone('deadline_passed', `round ${request.round} of run ${request.runId} is past its deadline`);
  const round = await getRound(pool, request.runId, request.round);
  if (round && round.status !== 'running') throw gone('round_closed', `round ${request.round} of run ${request.runId} is already ${round.status}`);
  if (round && Date.parse(round.deadline) < Date.now()) throw gone('deadline_passed', `round ${request.round} of run ${request.runId} is past its deadline`);
}

import express, { type Request, type Response } from 'express';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type pg from 'pg';
import { z } from 'zod';
import { inputSize, type ModelSpec } from '../core/model-spec.js';
import type { EventMode, IncomingEvent } from '../http/cloudevents.js';
import { HttpError } from '../http/errors.js';
import { bearerToken, constantTimeEqual } from '../shared/auth.js';
import type { Logger } from '../shared/log.js';
import { listPredictions, predictionsOf, recordPredictions, storedItems, type PredictionRecord } from '../store/predictions.js';
import type { WorkBudget } from './admission.js';
import { protocolErrors, requireKey } from './edge.js';
import { ServingError } from './errors.js';
import { INFERENCE_EVENTS, issuesText, parseInferenceRequest, type InputItem, type ParsedRequest } from './inference-inputs.js';
import { IMAGE_BYTES_PER_PIXEL } from './limits.js';
import type { Predictor } from './predictor.js';

export interface InferenceEventDeps {
  pool: pg.Pool;
  predictor: Predictor;
  nodeId: string;
  maxBatch: number;
  maxBodyBytes: number;
  imagePixelBudget: number;
  budget: WorkBudget;
  log: Logger;
  apiKeys?: string[];
  /** Directory that object references resolve in (a mounted bucket, the local inbox root); none: inline images only. */
  objectRoot?: string;
}

/** One image's outcome in a completed event: a result or an error record. */
export type CompletedItem = { item: number; source: string | null } & (
  | { class: number; probabilities: number[]; model_version: number | null; latency_ms: number }
  | { error: { code: string; message: string } }
);

export interface InferenceCompleted {
  request_id: string;
  node: string;
  model_version: number | null;
  offset: number;
  count: number;
  results: number;
  errors: number;
  /** True when every item was already stored (a redelivery): nothing was recomputed. */
  replayed: boolean;
  predictions: CompletedItem[];
}

/**
 * The event-driven path of the serving function: a `dev.edgefl.inference.requested` event in,
 * every image classified by the same predictor as the HTTP routes (chunked, memory-bounded),
 * one result or error record per image stored in PostgreSQL under the request id, and the
 * `dev.edgefl.inference.completed` data out. A bad image becomes its own error record; only a
 * malformed request as a whole, or a transient condition (no model yet, overload), fails it,
 * and then nothing is stored, so the sender's retry starts clean.
 */
export async function handleInferenceEvent(deps: InferenceEventDeps, event: Pick<IncomingEvent, 'id' | 'source' | 'data'>): Promise<InferenceCompleted> {
  const started = performance.now();
  // Inputs follow the served model: its H×W×C for images and tensors, its classes for results.
  const spec = deps.predictor.spec;
  const [PIXELS, NUM_CLASSES] = [inputSize(spec), spec.classes];
  const request = parseInferenceRequest(event.data, event, { maxItems: deps.maxBatch, objectRoot: deps.objectRoot, pixelsPerImage: PIXELS });
  const stored = await storedItems(deps.pool, request.requestId, request.offset, request.offset + request.count);
  if (stored.length === request.count) return completed(deps.nodeId, request, stored, true);
  deps.predictor.resolve({ name: deps.predictor.name }); // no model yet: 503 before any image is read
  const items = await request.items();
  const pixels = await toPixels(deps, items, request, spec);
  const ok = items.flatMap((it, i) => (pixels[i] ? [i] : []));
  const batch = new Float32Array(ok.length * PIXELS);
  ok.forEach((i, row) => batch.set(pixels[i]!, row * PIXELS));
  const prediction = ok.length ? await deps.predictor.predict({ pixels: batch, count: ok.length }, { name: deps.predictor.name }) : undefined;
  const latencyMs = performance.now() - started;
  const rowOf = new Map(ok.map((i, row) => [i, row]));
  const records: PredictionRecord[] = items.map((it, i) => {
    const base = { requestId: request.requestId, item: request.offset + i, nodeId: deps.nodeId, source: it.source, latencyMs };
    const row = rowOf.get(i) ?? -1;
    if (row < 0 || !prediction) return { ...base, modelVersion: null, class: null, probabilities: null, error: 'error' in it ? it.error : { code: 'internal', message: 'no result' } };
    const probs = Array.from(prediction.probs.subarray(row * NUM_CLASSES, (row + 1) * NUM_CLASSES), (p) => Math.round(p * 1e6) / 1e6);
    return { ...base, modelVersion: prediction.model.version, class: prediction.classes[row]!, probabilities: probs, error: null };
  });
  const result = await recordPredictions(deps.pool, records);
  deps.log.info('inference event', { request_id: request.requestId, offset: request.offset, images: request.count, errors: records.length - ok.length, model_version: prediction?.model.version ?? null, latency_ms: Math.round(latencyMs) });
  return completed(deps.nodeId, request, result, false);
}

/**
 * Model inputs of the items, decoded one at a time under a memory reservation (as upload.ts
 * does); an image that cannot be used gets its error in `items` and no pixels.
 */
async function toPixels(deps: InferenceEventDeps, items: InputItem[], request: ParsedRequest, spec: ModelSpec): Promise<(Float32Array | undefined)[]> {
  const { checkPixels, decodeImage, readImageHeader, toModelInput } = await import('./images.js');
  let allowed = deps.imagePixelBudget;
  const out: (Float32Array | undefined)[] = [];
  for (const it of items) {
    if ('pixels' in it || 'error' in it) {
      out.push('pixels' in it ? it.pixels : undefined);
      continue;
    }
    try {
      const header = readImageHeader(it.bytes);
      allowed -= checkPixels(header, allowed);
      const release = deps.budget.reserve(IMAGE_BYTES_PER_PIXEL * header.width * header.height);
      try {
        out.push(toModelInput(await decodeImage(it.bytes, header), request.invert, spec.image?.preprocess ?? 'mnist', { consume: true, shape: spec.inputShape }));
      } finally {
        release();
      }
      await nextTurn(); // probes get a turn between images
    } catch (e) {
      // Overload is the function's state, not the image's: the whole event is retried later.
      if (!(e instanceof ServingError) || e.code === 'overloaded') throw e;
      Object.assign(it, { error: { code: e.code, message: `${it.source ?? 'image'}: ${e.message}` } });
      out.push(undefined);
    }
  }
  return out;
}

function completed(nodeId: string, request: ParsedRequest, records: PredictionRecord[], replayed: boolean): InferenceCompleted {
  const versions = records.flatMap((r) => (r.modelVersion === null ? [] : [r.modelVersion]));
  return {
    request_id: request.requestId,
    node: nodeId,
    model_version: versions.length ? Math.max(...versions) : null,
    offset: request.offset,
    count: records.length,
    results: records.filter((r) => !r.error).length,
    errors: records.filter((r) => r.error).length,
    replayed,
    predictions: records.map(toCompletedItem),
  };
}

export function toCompletedItem(r: PredictionRecord): CompletedItem {
  const base = { item: r.item, source: r.source };
  return r.error ? { ...base, error: r.error } : { ...base, class: r.class!, probabilities: r.probabilities!, model_version: r.modelVersion, latency_ms: Math.round(r.latencyMs * 10) / 10 };
}

const pageQuery = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  node: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
});

/**
 * The Express adapter: `POST /` takes the event (binary or structured mode, from a Knative
 * Trigger or any CloudEvents source, or plain JSON) and answers with the completed event in the
 * same mode (Knative's reply: a Broker routes it on); `GET /v1/predictions/:id` and
 * `GET /v1/predictions` read the stored records. Errors are `{error:{code,message}}`.
 */
export function inferenceEventsRouter(deps: InferenceEventDeps): express.Router {
  const router = express.Router();
  const source = `/edgefl/serving/${deps.nodeId}`;
  router.post('/', express.raw({ type: () => true, limit: deps.maxBodyBytes }), async (req, res, next) => {
    let release = () => {};
    try {
      const body = Buffer.isBuffer(req.body) ? req.body : undefined;
      // JSON text, its parse and the decoded base64 all live at once.
      release = deps.budget.reserve(3 * (body?.length ?? 0));
      const { readEvent, makeEvent, encodeEvent } = await cloudEvents();
      const event = readEvent(req.headers, body, INFERENCE_EVENTS.requested);
      authorise(deps.apiKeys, req, event);
      const data = await handleInferenceEvent(deps, event);
      reply(res, event.mode, makeEvent(INFERENCE_EVENTS.completed, source, { ...data }), encodeEvent);
    } catch (e) {
      next(e);
    } finally {
      release();
    }
  });
  router.get('/v1/predictions/:id', requireKey(deps.apiKeys), (req, res, next) => {
    const q = pageQuery.safeParse(req.query);
    if (!q.success) return next(invalidQuery(q.error));
    const id = String(req.params.id).slice(0, 200);
    predictionsOf(deps.pool, id, q.data).then(({ total, records }) => {
      if (total === 0) throw new HttpError(404, 'prediction_not_found', `no predictions stored under request id '${id}'`);
      res.json({ request_id: id, total, offset: q.data.offset, predictions: records.map((r) => ({ ...toCompletedItem(r), node: r.nodeId, created_at: r.createdAt })) });
    }).catch(next);
  });
  router.get('/v1/predictions', requireKey(deps.apiKeys), (req, res, next) => {
    const q = pageQuery.safeParse(req.query);
    if (!q.success) return next(invalidQuery(q.error));
    listPredictions(deps.pool, { nodeId: q.data.node, limit: q.data.limit }).then((records) => {
      res.json({ predictions: records.map((r) => ({ request_id: r.requestId, node: r.nodeId, created_at: r.createdAt, ...toCompletedItem(r) })) });
    }).catch(next);
  });
  router.use(protocolErrors(deps.log, (e) => ({ error: { code: e.code, message: e.message } })));
  return router;
}

type CloudEvents = typeof import('../http/cloudevents.js');
let cloudEventsModule: Promise<CloudEvents> | undefined;
/** The CloudEvents SDK loads with the first event, not at start: a cold start's first prediction never needs it. */
const cloudEvents = (): Promise<CloudEvents> => (cloudEventsModule ??= import('../http/cloudevents.js'));

const invalidQuery = (e: z.ZodError) => new HttpError(400, 'invalid_query', issuesText(e, 'query'));

function reply(res: Response, mode: EventMode, event: ReturnType<CloudEvents['makeEvent']>, encodeEvent: CloudEvents['encodeEvent']): void {
  const out = encodeEvent(event, mode);
  res.status(200).set(out.headers).send(out.body);
}

/** API keys, when configured: in a header, or (through a Broker, which drops headers) in the edgeflauth attribute. */
function authorise(apiKeys: string[] | undefined, req: Request, event: IncomingEvent): void {
  if (!apiKeys?.length) return;
  const presented = bearerToken(req.get('authorization')) ?? req.get('x-api-key') ?? event.auth;
  if (presented !== undefined && apiKeys.some((k) => constantTimeEqual(k, presented))) return;
  throw new HttpError(401, 'unauthorized', 'a valid API key is required (Authorization: Bearer <key>, X-API-Key, or the edgeflauth attribute)', { 'WWW-Authenticate': 'Bearer' });
}

import express, { type Request, type Response, type NextFunction } from 'express';
import type busboy from 'busboy';
import { bearerToken, constantTimeEqual } from '../shared/auth.js';
import { HttpError, badRequest, errorBody, fromParserError, tooLarge } from '../http/errors.js';
import { applyCommonMiddleware, applyErrorHandlers } from '../http/common.js';
import type { Logger } from '../shared/log.js';
import { createMetrics, type Metrics } from '../shared/metrics.js';
import { MODEL_NAME, NUM_CLASSES, PIXELS, argmaxRows } from '../core/model.js';
import type { InvertMode, Preprocess } from './images.js';
import type { ModelHolder, LoadedModel } from './model-holder.js';
import { imagesFromNested, imagesFromV2, type Batch } from './tensor-input.js';
import { PredictBatcher } from './batcher.js';

export interface ServingDeps {
  holder: ModelHolder;
  log: Logger;
  nodeId: string;
  maxBatch: number;
  maxBodyBytes: number;
  apiKeys?: string[];
  metrics?: Metrics;
}

/**
 * The model-serving function: TensorFlow Serving REST routes, the Open Inference
 * Protocol (KServe V2) routes, and image upload. Every response names the model
 * version that produced it (body and X-Model-Version header).
 */
export function createServingApp(deps: ServingDeps) {
  const metrics = deps.metrics ?? createMetrics('serving');
  const app = express();
  applyCommonMiddleware(app, deps.log, metrics);
  app.use((_req, res, next) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization, X-API-Key');
    next();
  });
  app.options(/.*/, (_req, res) => void res.status(204).end());
  const batcher = new PredictBatcher(() => deps.holder.current);
  const jsonTypes = ['application/json', 'application/*+json'];
  const parseJson = express.json({ limit: deps.maxBodyBytes, type: jsonTypes });
  // A body of another type would otherwise be skipped by the parser and reported as a missing body.
  const json = (req: Request, res: Response, next: NextFunction) => {
    if (req.headers['content-type'] !== undefined && req.is(jsonTypes) === false) return next(new HttpError(415, 'unsupported_media_type', 'send the request body as application/json'));
    parseJson(req, res, next);
  };

  const requireKey = (req: Request, _res: Response, next: NextFunction) => {
    if (!deps.apiKeys?.length) return next();
    const presented = bearerToken(req.get('authorization')) ?? req.get('x-api-key');
    const ok = presented !== undefined && deps.apiKeys.some((k) => constantTimeEqual(k, presented));
    next(ok ? undefined : new HttpError(401, 'unauthorized', 'a valid API key is required (Authorization: Bearer <key> or X-API-Key)', { 'WWW-Authenticate': 'Bearer' }));
  };

  const live = (_req: Request, res: Response) => void res.json({ live: true });
  const ready = (_req: Request, res: Response) => {
    const m = deps.holder.current;
    res.status(m ? 200 : 503).json(m ? { ready: true, model_version: String(m.version) } : { ready: false, error: 'no model version published yet' });
  };
  app.get('/healthz', live);
  app.get('/v2/health/live', live);
  app.get('/readyz', ready);
  app.get('/v2/health/ready', ready);
  app.get('/v2', (_req, res) => void res.json({ name: 'edgefl-serving', version: '1', extensions: [] }));

  // ---- TensorFlow Serving REST -------------------------------------------
  app.get('/v1/models/:name', (req, res) => {
    const model = modelOrThrow(String(req.params.name), false);
    res.json({ model_version_status: [{ version: String(model.version), state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] });
  });
  app.get('/v1/models/:name/metadata', (req, res) => {
    const model = modelOrThrow(String(req.params.name), false);
    res.json({
      model_spec: { name: MODEL_NAME, version: String(model.version), signature_name: 'serving_default' },
      metadata: {
        signature_def: {
          signature_def: {
            serving_default: {
              inputs: { images: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '28' }, { size: '28' }, { size: '1' }] } } },
              outputs: { probabilities: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: String(NUM_CLASSES) }] } } },
              method_name: 'tensorflow/serving/predict',
            },
          },
        },
      },
      edgefl: { node: deps.nodeId, checksum: model.checksum, metrics: model.metrics, created_at: model.createdAt, loaded_at: model.loadedAt },
    });
  });
  app.post(/^\/v1\/models\/([^/:]+):predict$/, requireKey, json, async (req, res) => {
    const name = (req.params as Record<string, string>)[0]!;
    modelOrThrow(name, false);
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('invalid_body', 'send a JSON object with "instances" or "inputs"');
    const key = body.instances !== undefined ? 'instances' : body.inputs !== undefined ? 'inputs' : undefined;
    if (!key) throw badRequest('missing_field', 'the body needs "instances" or "inputs"');
    const batch = imagesFromNested(body[key], key, deps.maxBatch);
    const { probs, classes, model } = await predict(batch);
    res.setHeader('X-Model-Version', String(model.version));
    res.json({ predictions: rows(probs, batch.count), classes, model_name: MODEL_NAME, model_version: String(model.version) });
  });
  app.post(/^\/v1\/models\/([^/:]+):classify$/, requireKey, (req, res, next) => {
    const name = (req.params as Record<string, string>)[0]!;
    modelOrThrow(name, false);
    const invert = parseInvert(req.query.invert);
    const preprocess = req.query.preprocess === 'resize' ? 'resize' : ('mnist' as Preprocess);
    readImages(req, deps.maxBodyBytes, deps.maxBatch)
      .then(async (files) => {
        // Image codecs load on first use: most traffic is tensors, and cold starts should not pay for them.
        const { decodeImage, toModelInput } = await import('./images.js');
        const pixels = new Float32Array(files.length * PIXELS);
        files.forEach((f, i) => {
          try {
            pixels.set(toModelInput(decodeImage(f.bytes), invert, preprocess), i * PIXELS);
          } catch (e) {
            if (e instanceof HttpError) throw new HttpError(e.status, e.code, `${f.name}: ${e.message}`);
            throw e;
          }
        });
        const { probs, classes, model: current } = await predict({ pixels, count: files.length });
        const probRows = rows(probs, files.length);
        res.setHeader('X-Model-Version', String(current.version));
        res.json({
          model_name: MODEL_NAME,
          model_version: String(current.version),
          results: files.map((f, i) => ({ file: f.name, class: classes[i], probabilities: probRows[i], top3: top3(probs, i) })),
        });
      })
      .catch(next);
  });

  // ---- Open Inference Protocol (KServe V2) -------------------------------
  const v2 = express.Router();
  v2.get('/models/:name', (req, res) => {
    const model = modelOrThrow(String(req.params.name), true);
    res.json({
      name: MODEL_NAME,
      versions: [String(model.version)],
      platform: 'tensorflowjs',
      inputs: [{ name: 'images', datatype: 'FP32', shape: [-1, PIXELS] }],
      outputs: [
        { name: 'probabilities', datatype: 'FP32', shape: [-1, NUM_CLASSES] },
        { name: 'class', datatype: 'INT64', shape: [-1] },
      ],
    });
  });
  v2.get('/models/:name/ready', (req, res) => {
    if (req.params.name !== MODEL_NAME) throw new V2Error(404, `model '${req.params.name}' is not served here`);
    res.status(deps.holder.current ? 200 : 503).json({ name: MODEL_NAME, ready: Boolean(deps.holder.current) });
  });
  v2.post('/models/:name/infer', requireKey, json, async (req, res) => {
    modelOrThrow(String(req.params.name), true);
    const body = req.body as { id?: unknown; inputs?: unknown } | undefined;
    if (!body || typeof body !== 'object' || !Array.isArray(body.inputs) || body.inputs.length !== 1) {
      throw new V2Error(400, 'the body needs "inputs" with exactly one FP32 tensor');
    }
    let batch: Batch;
    try {
      batch = imagesFromV2(body.inputs[0], deps.maxBatch);
    } catch (e) {
      if (e instanceof HttpError) throw new V2Error(e.status, e.message);
      throw e;
    }
    const { probs, classes, model } = await predict(batch);
    res.setHeader('X-Model-Version', String(model.version));
    res.json({
      model_name: MODEL_NAME,
      model_version: String(model.version),
      ...(typeof body.id === 'string' ? { id: body.id } : {}),
      outputs: [
        { name: 'probabilities', shape: [batch.count, NUM_CLASSES], datatype: 'FP32', data: Array.from(probs) },
        { name: 'class', shape: [batch.count], datatype: 'INT64', data: classes },
      ],
    });
  });
  // The V2 protocol has its own error shape: {"error": "..."}.
  v2.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof V2Error) return void res.status(err.status).json({ error: err.message });
    const parsed = err instanceof HttpError ? err : fromParserError(err);
    if (parsed) return void res.status(parsed.status).set(parsed.headers).json({ error: parsed.message });
    deps.log.error('unhandled error', { err });
    res.status(500).json({ error: 'internal error' });
  });
  app.use('/v2', v2);

  function modelOrThrow(name: string, v2style: boolean): LoadedModel {
    if (name !== MODEL_NAME) {
      if (v2style) throw new V2Error(404, `model '${name}' is not served here`);
      throw new HttpError(404, 'model_not_found', `model '${name}' is not served here; try '${MODEL_NAME}'`);
    }
    const current = deps.holder.current;
    if (!current) {
      if (v2style) throw new V2Error(503, 'no model version is loaded yet');
      throw new HttpError(503, 'model_unavailable', 'no model version has been published yet; start a training run first', { 'Retry-After': '5' });
    }
    return current;
  }

  async function predict(batch: Batch) {
    // One tensor call for the whole batch, shared with other small requests in flight.
    const { probs, model } = await batcher.predict(batch.pixels, batch.count);
    metrics.predictions.inc();
    metrics.imagesServed.inc(batch.count);
    return { probs, classes: argmaxRows(probs), model };
  }

  applyErrorHandlers(app, deps.log);
  return app;
}

class V2Error extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function rows(probs: Float32Array, count: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < count; i++) out.push(Array.from(probs.subarray(i * NUM_CLASSES, (i + 1) * NUM_CLASSES), (p) => Math.round(p * 1e6) / 1e6));
  return out;
}

function top3(probs: Float32Array, row: number): { class: number; probability: number }[] {
  return Array.from(probs.subarray(row * NUM_CLASSES, (row + 1) * NUM_CLASSES), (p, c) => ({ class: c, probability: Math.round(p * 1e4) / 1e4 }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, 3);
}

function parseInvert(q: unknown): InvertMode {
  if (q === undefined) return 'auto';
  if (q === 'auto' || q === 'true' || q === 'false') return q;
  throw badRequest('invalid_query', "invert must be auto, true or false");
}

interface UploadedImage {
  name: string;
  bytes: Buffer;
}

/** Images from multipart/form-data (any number of file fields) or a raw image/* body. */
function readImages(req: Request, maxBytes: number, maxFiles: number): Promise<UploadedImage[]> {
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) return readMultipart(req, maxBytes, maxFiles);
  if (type.startsWith('image/') || type === 'application/octet-stream') {
    return readBody(req, maxBytes).then((bytes) => {
      if (bytes.length === 0) throw badRequest('empty_body', 'the image body is empty');
      return [{ name: 'body', bytes }];
    });
  }
  return Promise.reject(new HttpError(415, 'unsupported_media_type', 'send multipart/form-data with image files, or a raw image/png or image/jpeg body'));
}

function readBody(req: Request, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge('body_too_large', `image body exceeds ${maxBytes} bytes`));
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => reject(badRequest('request_aborted', 'the request body was not received completely')));
  });
}

async function readMultipart(req: Request, maxBytes: number, maxFiles: number): Promise<UploadedImage[]> {
  const { default: createBusboy } = await import('busboy');
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = createBusboy({ headers: req.headers, limits: { fileSize: maxBytes, files: maxFiles, fields: 20, parts: maxFiles + 20 } });
    } catch (e) {
      return reject(badRequest('invalid_multipart', `multipart request is malformed: ${(e as Error).message}`));
    }
    const files: UploadedImage[] = [];
    let failed: HttpError | undefined;
    const fail = (e: HttpError) => {
      failed ??= e;
    };
    bb.on('file', (_field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => fail(tooLarge('file_too_large', `${info.filename ?? 'file'} exceeds ${maxBytes} bytes`)));
      // A body that ends before its closing boundary errors the file stream too; unhandled, that would crash the process.
      stream.on('error', (e: Error) => fail(badRequest('invalid_multipart', `multipart body is malformed: ${e.message}`)));
      stream.on('end', () => files.push({ name: info.filename || `file${files.length}`, bytes: Buffer.concat(chunks) }));
    });
    bb.on('filesLimit', () => fail(tooLarge('too_many_files', `more than ${maxFiles} files in one request`)));
    bb.on('partsLimit', () => fail(tooLarge('too_many_parts', 'too many parts in the multipart body')));
    bb.on('error', (e) => {
      req.unpipe(bb);
      req.resume();
      reject(failed ?? badRequest('invalid_multipart', `multipart body is malformed: ${(e as Error).message}`));
    });
    bb.on('close', () => {
      if (failed) return reject(failed);
      if (files.length === 0) return reject(badRequest('no_files', 'the multipart body holds no image files'));
      resolve(files);
    });
    req.on('aborted', () => reject(badRequest('request_aborted', 'the request body was not received completely')));
    // busboy limits each file; the body as a whole must stay under maxBytes too.
    let total = 0;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > maxBytes && !failed) {
        fail(tooLarge('body_too_large', `multipart body exceeds ${maxBytes} bytes`));
        req.unpipe(bb);
        req.resume();
        reject(failed);
      }
    });
    req.pipe(bb);
  });
}

export { errorBody };

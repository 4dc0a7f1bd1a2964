import express, { type Request, type Response } from 'express';
import { REFERENCE_CNN, type ModelSpec } from '../core/model-spec.js';
import type { Logger } from '../shared/log.js';
import type { WorkBudget } from './admission.js';
import { readModelRequest, type JsonBodyLimits } from './body.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { protocolErrors, requireKey, sendReply, type EdgeError, type Reply } from './edge.js';
import { routePattern } from '../shared/metrics.js';
import { DenseTensor } from './dense-json.js';
import type { DirectRoute } from './direct-predict.js';
import { InvalidInput } from './errors.js';
import type { BodyPath } from './json-turns.js';
import type { ModelRef, Predictor } from './predictor.js';
import { tfPredictRequest } from './schema.js';
import { imagesFromNested } from './tensor-input.js';

export const SIGNATURE = 'serving_default';
const INPUT = 'images';
const OUTPUT = 'probabilities';

export interface TfServingDeps {
  predictor: Predictor;
  log: Logger;
  nodeId: string;
  maxBatch: number;
  body: JsonBodyLimits;
  budget: WorkBudget;
  apiKeys?: string[];
}

/** A model name and optional version from a route: `/models/:name` or `/models/:name/versions/:version`. */
const refOf = (req: Request): ModelRef => {
  const p = req.params as Record<string, string>;
  return { name: p.name ?? p[0]!, version: p.version ?? p[1] };
};

/**
 * The TensorFlow Serving REST API (v1) over the predictor: model status, metadata, and
 * predict in the row (`instances` → `predictions`) and columnar (`inputs` → `outputs`)
 * forms, unversioned and versioned. Errors are TF Serving's `{"error": "<message>"}`, with a
 * machine-readable `code` beside it. Image upload (`:classify`) is mounted on this router
 * by upload.ts; TF Serving's Example-based classify and regress APIs are refused clearly.
 */
export function tfServingRouter(deps: TfServingDeps, upload: (router: express.Router) => void): express.Router {
  const v1 = express.Router();
  const { predictor } = deps;

  const status = (req: Request, res: Response) => {
    const model = predictor.resolve(refOf(req));
    res.json({
      model_version_status: [{ version: String(model.version), state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
      served_version: String(model.version),
      canary: model.canary === true,
    });
  };
  v1.get('/models/:name', status);
  v1.get('/models/:name/versions/:version', status);

  const metadata = (req: Request, res: Response) => {
    const model = predictor.resolve(refOf(req));
    res.json({
      model_spec: { name: predictor.name, version: String(model.version), signature_name: SIGNATURE },
      metadata: { signature_def: { signature_def: { [SIGNATURE]: signatureDef(predictor.spec) } } },
      edgefl: { node: deps.nodeId, canary: model.canary === true, checksum: model.checksum, metrics: model.metrics, created_at: model.createdAt, loaded_at: model.loadedAt },
    });
  };
  v1.get('/models/:name/metadata', metadata);
  v1.get('/models/:name/versions/:version/metadata', metadata);

  const predict = predictReply(deps);
  const predictRoute = async (req: Request, res: Response) => sendReply(res, await predict(req, res, refOf(req)));
  v1.post(PREDICT_ROUTE, requireKey(deps.apiKeys), predictRoute);
  v1.post(VERSIONED_PREDICT_ROUTE, requireKey(deps.apiKeys), predictRoute);

  upload(v1);

  const regress = (req: Request) => {
    predictor.resolve(refOf(req));
    throw new InvalidInput('unsupported_api', `the Regress API is not supported: this model is a classifier; use :predict (or :classify with image files)`);
  };
  v1.post(/^\/models\/([^/:]+):regress$/, regress);
  v1.post(/^\/models\/([^/:]+)\/versions\/([^/:]+):regress$/, regress);
  v1.use((req, res) => void res.status(404).json({ error: `no route for ${req.method} /v1${req.path}`, code: 'route_not_found' }));
  v1.use(protocolErrors(deps.log, tfServingError));
  return v1;
}

/** Where a predict body holds one tensor: `instances`, `inputs`, or `inputs.images`. */
const tensorSites = (path: BodyPath) =>
  (path.length === 1 && (path[0] === 'instances' || path[0] === 'inputs')) || (path.length === 2 && path[0] === 'inputs' && path[1] === INPUT);

/** The predict routes as direct-predict.ts answers them: the same patterns under /v1, and the metrics label Express gives them. */
export function tfServingDirectRoutes(deps: Pick<TfServingDeps, 'predictor' | 'maxBatch' | 'body' | 'budget'>): DirectRoute[] {
  const reply = predictReply(deps);
  const underV1 = (route: RegExp): DirectRoute => ({ pattern: new RegExp(`^\\/v1${route.source.slice(1)}`), label: `/v1${routePattern(route)}`, reply, render: tfServingError });
  return [underV1(PREDICT_ROUTE), underV1(VERSIONED_PREDICT_ROUTE)];
}

/** TF Serving's error body, with a machine-readable code beside it. */
const tfServingError = (e: EdgeError) => ({ error: e.message, code: e.code });

/** The predict routes under /v1: the model's name, and its version on the second. */
const PREDICT_ROUTE = /^\/models\/([^/:]+):predict$/;
const VERSIONED_PREDICT_ROUTE = /^\/models\/([^/:]+)\/versions\/([^/:]+):predict$/;

/**
 * Predict, in the row (`instances` → `predictions`) or columnar (`inputs` → `outputs`) form,
 * for the model and version the route named: the Reply that Express (tfServingRouter) and the
 * direct path (direct-predict.ts) both write.
 */
function predictReply(deps: Pick<TfServingDeps, 'predictor' | 'maxBatch' | 'body' | 'budget'>) {
  const { predictor } = deps;
  return async (req: IncomingMessage, res: ServerResponse, ref: ModelRef): Promise<Reply> => {
    const body = await readModelRequest(req, res, deps, ref, tfPredictRequest, 'request body', tensorSites);
    if (body.signature_name !== undefined && body.signature_name !== SIGNATURE) {
      throw new InvalidInput('signature_not_found', `signature_name '${body.signature_name}' is not a signature of this model; its only signature is '${SIGNATURE}'`);
    }
    if (body.instances !== undefined && body.inputs !== undefined) throw new InvalidInput('invalid_body', 'send either "instances" (row format) or "inputs" (columnar format), not both');
    const columnar = body.inputs !== undefined;
    if (!columnar && body.instances === undefined) throw new InvalidInput('missing_field', 'the body needs "instances" (row format) or "inputs" (columnar format)');
    const key = columnar ? 'inputs' : 'instances';
    const batch = imagesFromNested(namedInput(columnar ? body.inputs : body.instances, key), key, deps.maxBatch, predictor.spec.inputShape);
    const { probs, classes, model } = await predictor.predict(batch, ref);
    return {
      headers: { 'X-Model-Version': String(model.version) },
      body: { json: { [columnar ? 'outputs' : 'predictions']: rows(probs, batch.count, model.spec?.classes), classes, model_name: predictor.name, model_version: String(model.version) } },
    };
  };
}

/** Row instances may name the input ({"images": ...}); columnar inputs may be a map of input names. */
function namedInput(value: unknown, key: string): unknown {
  if (value instanceof DenseTensor) return value;
  if (key === 'inputs' && value !== null && typeof value === 'object' && !Array.isArray(value)) return pick(value as Record<string, unknown>, 'inputs');
  if (Array.isArray(value) && value.length > 0 && value.every((v) => v !== null && typeof v === 'object' && !Array.isArray(v))) {
    return value.map((v, i) => pick(v as Record<string, unknown>, `instances[${i}]`));
  }
  return value;
}

function pick(named: Record<string, unknown>, where: string): unknown {
  const names = Object.keys(named);
  if (names.length !== 1 || names[0] !== INPUT) throw new InvalidInput('invalid_input', `${where} names input(s) ${names.map((n) => `'${n}'`).join(', ') || 'none'}; this model has one input, '${INPUT}'`);
  return named[INPUT];
}

function signatureDef(spec: ModelSpec) {
  const dims = (shape: readonly number[]) => ({ dim: shape.map((size) => ({ size: String(size) })) });
  return {
    inputs: { [INPUT]: { dtype: 'DT_FLOAT', tensor_shape: dims([-1, ...spec.inputShape]), name: INPUT } },
    outputs: { [OUTPUT]: { dtype: 'DT_FLOAT', tensor_shape: dims([-1, spec.classes]), name: OUTPUT } },
    method_name: 'tensorflow/serving/predict',
  };
}

/** Probabilities as one row per image, rounded to 6 decimals (JSON size). */
export function rows(probs: Float32Array, count: number, classes = REFERENCE_CNN.classes): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < count; i++) out.push(Array.from(probs.subarray(i * classes, (i + 1) * classes), (p) => Math.round(p * 1e6) / 1e6));
  return out;
}


import express, { type Request, type Response } from 'express';
import { REFERENCE_CNN } from '../core/model-spec.js';
import type { Logger } from '../shared/log.js';
import type { WorkBudget } from './admission.js';
import { BINARY_EXTENSION, BINARY_HEADER, binaryDataSize, binaryResponse, encodeOutput } from './binary-tensor.js';
import { readBinaryBody, readModelRequest, type JsonBodyLimits } from './body.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { protocolErrors, requireKey, sendReply, type EdgeError, type Reply } from './edge.js';
import { InvalidInput } from './errors.js';
import type { DirectRoute } from './direct-predict.js';
import type { BodyPath } from './json-turns.js';
import type { ModelRef, Prediction, Predictor } from './predictor.js';
import { oipInferRequest, parseBody, type OipInferRequest } from './schema.js';
import { imagesFromV2, imagesFromV2Binary, V2_SUPPORTED } from './tensor-input.js';

export interface OipDeps {
  predictor: Predictor;
  log: Logger;
  maxBatch: number;
  body: JsonBodyLimits;
  budget: WorkBudget;
  apiKeys?: string[];
}

const INPUT = 'images';
/** The model's outputs, in the order they are returned when a request names none. */
const OUTPUTS = {
  probabilities: (p: Prediction) => ({ name: 'probabilities', shape: [p.count, p.model.spec?.classes ?? REFERENCE_CNN.classes], datatype: 'FP32' as const, values: p.probs }),
  class: (p: Prediction) => ({ name: 'class', shape: [p.count], datatype: 'INT64' as const, values: p.classes }),
} as const;
type OutputName = keyof typeof OUTPUTS;
/** An output the request asked for, and whether it goes back as binary data (the extension's `binary_data`). */
interface RequestedOutput {
  name: OutputName;
  binary: boolean;
}

/** The inference routes under /v2. */
const INFER_PATH = '/models/:name/infer';
const VERSIONED_INFER_PATH = '/models/:name/versions/:version/infer';

/** The inference routes as direct-predict.ts answers them: patterns matching what INFER_PATH and VERSIONED_INFER_PATH match under /v2, labelled as Express labels them. */
export function oipDirectRoutes(deps: Pick<OipDeps, 'predictor' | 'maxBatch' | 'body' | 'budget'>): DirectRoute[] {
  const reply = inferReply(deps);
  return [
    { pattern: /^\/v2\/models\/([^/]+)\/infer$/, label: `/v2${INFER_PATH}`, reply, render: oipError },
    { pattern: /^\/v2\/models\/([^/]+)\/versions\/([^/]+)\/infer$/, label: `/v2${VERSIONED_INFER_PATH}`, reply, render: oipError },
  ];
}

/** The Open Inference Protocol's error body. */
const oipError = (e: EdgeError) => ({ error: e.message });

/** Where an inference request holds its tensors: each input's `data`. */
const tensorSites = (path: BodyPath) => path.length === 3 && path[0] === 'inputs' && typeof path[1] === 'number' && path[2] === 'data';

const refOf = (req: Request): ModelRef => ({ name: String(req.params.name), version: req.params.version === undefined ? undefined : String(req.params.version) });

/**
 * The Open Inference Protocol (KServe V2) REST API over the predictor: server metadata,
 * model metadata and readiness, and inference, each unversioned and under
 * `/versions/{v}`. Errors are the protocol's `{"error": "<message>"}`.
 */
export function oipRouter(deps: OipDeps): express.Router {
  const v2 = express.Router();
  const { predictor } = deps;
  v2.get('/', (_req, res) => void res.json({ name: 'edgefl-serving', version: '1', extensions: [BINARY_EXTENSION] }));

  const metadata = (req: Request, res: Response) => {
    const model = predictor.resolve(refOf(req));
    res.json({
      name: predictor.name,
      versions: [String(model.version)],
      platform: 'tensorflowjs',
      inputs: [{ name: INPUT, datatype: 'FP32', shape: [-1, ...predictor.spec.inputShape] }],
      outputs: [
        { name: 'probabilities', datatype: 'FP32', shape: [-1, predictor.spec.classes] },
        { name: 'class', datatype: 'INT64', shape: [-1] },
      ],
    });
  };
  v2.get('/models/:name', metadata);
  v2.get('/models/:name/versions/:version', metadata);

  const ready = (req: Request, res: Response) => {
    const ref = refOf(req);
    let isReady = true;
    try {
      predictor.resolve(ref);
    } catch (e) {
      if (!predictor.ready && ref.name === predictor.name) isReady = false;
      else throw e;
    }
    res.status(isReady ? 200 : 503).json({ name: predictor.name, ...(ref.version !== undefined ? { version: ref.version } : {}), ready: isReady });
  };
  v2.get('/models/:name/ready', ready);
  v2.get('/models/:name/versions/:version/ready', ready);

  const infer = inferReply(deps);
  const inferRoute = async (req: Request, res: Response) => sendReply(res, await infer(req, res, refOf(req)));
  v2.post(INFER_PATH, requireKey(deps.apiKeys), inferRoute);
  v2.post(VERSIONED_INFER_PATH, requireKey(deps.apiKeys), inferRoute);
  v2.use((req, res) => void res.status(404).json({ error: `no route for ${req.method} /v2${req.path}` }));
  v2.use(protocolErrors(deps.log, oipError));
  return v2;
}


/**
 * Inference on the model and version the route named, with its request in JSON or in the
 * binary tensor data extension's form: the Reply that Express (oipRouter) and the direct path
 * (direct-predict.ts) both write.
 */
function inferReply(deps: Pick<OipDeps, 'predictor' | 'maxBatch' | 'body' | 'budget'>) {
  const { predictor } = deps;
  return async (req: IncomingMessage, res: ServerResponse, ref: ModelRef): Promise<Reply> => {
    // The binary extension's form is announced by its header; without it the body is plain JSON.
    const binaryForm = req.headers[BINARY_HEADER] !== undefined;
    let body: OipInferRequest;
    let binaryData: Buffer | undefined;
    if (binaryForm) {
      predictor.resolve(ref);
      const read = await readBinaryBody(req, res, deps.body, deps.budget);
      body = parseBody(oipInferRequest, read.header, 'inference request');
      binaryData = read.data;
    } else {
      body = await readModelRequest(req, res, deps, ref, oipInferRequest, 'inference request', tensorSites);
    }
    const outputs = requestedOutputs(body);
    if (body.inputs.length !== 1) throw new InvalidInput('invalid_input', `this model has one input, '${INPUT}'; the request has ${body.inputs.length}`);
    const input = body.inputs[0]!;
    if (input.name !== INPUT) throw new InvalidInput('invalid_input', `input '${input.name}' is not an input of this model; its input is '${INPUT}' (${V2_SUPPORTED.join('/')}, shape [-1,${predictor.spec.inputShape.join(',')}])`);
    const size = binaryDataSize(input.parameters, `input '${input.name}'`);
    if (size !== undefined && !binaryForm) {
      throw new InvalidInput('missing_binary_header', `input '${input.name}' sets binary_data_size, but the request has no Inference-Header-Content-Length header saying where its JSON ends`);
    }
    // A binary-form request whose one input is JSON (no binary_data_size, nothing after the header) reads as JSON.
    const batch = binaryData && (size !== undefined || binaryData.length > 0)
      ? imagesFromV2Binary(input, size, binaryData, deps.maxBatch, predictor.spec.inputShape)
      : imagesFromV2(input, deps.maxBatch, predictor.spec.inputShape);
    const prediction = await predictor.predict(batch, ref);
    const headers = { 'X-Model-Version': String(prediction.model.version) };
    const header = { model_name: predictor.name, model_version: String(prediction.model.version), ...(body.id !== undefined ? { id: body.id } : {}) };
    const tensors = outputs.map((o) => ({ ...o, tensor: OUTPUTS[o.name](prediction) }));
    if (!tensors.some((t) => t.binary)) {
      return { headers, body: { json: { ...header, outputs: tensors.map(({ tensor: { values, ...meta } }) => ({ ...meta, data: Array.from(values) })) } } };
    }
    const binaries: Buffer[] = [];
    const described = tensors.map(({ binary, tensor: { values, ...meta } }) => {
      if (!binary) return { ...meta, data: Array.from(values) };
      const encoded = encodeOutput(meta.datatype, values);
      binaries.push(encoded);
      return { ...meta, parameters: { binary_data_size: encoded.length } };
    });
    const reply = binaryResponse({ ...header, outputs: described }, binaries);
    return { headers: { ...headers, 'Inference-Header-Content-Length': String(reply.headerLength) }, body: { bytes: reply.body, type: 'application/octet-stream' } };
  };
}

/**
 * The outputs a request asks for (all, in model order, when it names none), each as JSON or
 * binary data: an output's `binary_data`, else the request's `binary_data_output`, else JSON.
 */
function requestedOutputs(body: OipInferRequest): RequestedOutput[] {
  const byDefault = flag(body.parameters, 'binary_data_output', 'the request') ?? false;
  if (!body.outputs) return (Object.keys(OUTPUTS) as OutputName[]).map((name) => ({ name, binary: byDefault }));
  const out: RequestedOutput[] = [];
  for (const o of body.outputs) {
    if (!(o.name in OUTPUTS)) throw new InvalidInput('invalid_output', `output '${o.name}' is not an output of this model; its outputs are ${Object.keys(OUTPUTS).join(', ')}`);
    if (out.some((r) => r.name === o.name)) throw new InvalidInput('invalid_output', `output '${o.name}' is requested twice`);
    out.push({ name: o.name as OutputName, binary: flag(o.parameters, 'binary_data', `output '${o.name}'`) ?? byDefault });
  }
  return out;
}

/** A boolean parameter of the extension, or undefined when unset; any other value is a 400. */
function flag(parameters: Record<string, unknown> | undefined, key: string, where: string): boolean | undefined {
  const v = parameters?.[key];
  if (v === undefined || typeof v === 'boolean') return v;
  throw new InvalidInput('invalid_parameter', `${where}: parameter '${key}' must be true or false; got ${JSON.stringify(v)}`);
}

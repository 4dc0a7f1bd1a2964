import express, { type Request, type Response } from 'express';
import { REFERENCE_CNN } from '../core/model-spec.js';
import type { Logger } from '../shared/log.js';
import type { WorkBudget } from './admission.js';
import { readModelRequest, type JsonBodyLimits } from './body.js';
import { protocolErrors, requireKey } from './edge.js';
import { InvalidInput } from './errors.js';
import type { ModelRef, Prediction, Predictor } from './predictor.js';
import { oipInferRequest, type OipInferRequest } from './schema.js';
import { imagesFromV2, V2_SUPPORTED } from './tensor-input.js';

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
  probabilities: (p: Prediction) => ({ name: 'probabilities', shape: [p.count, p.model.spec?.classes ?? REFERENCE_CNN.classes], datatype: 'FP32', data: Array.from(p.probs) }),
  class: (p: Prediction) => ({ name: 'class', shape: [p.count], datatype: 'INT64', data: p.classes }),
} as const;
type OutputName = keyof typeof OUTPUTS;

const refOf = (req: Request): ModelRef => ({ name: String(req.params.name), version: req.params.version === undefined ? undefined : String(req.params.version) });

/**
 * The Open Inference Protocol (KServe V2) REST API over the predictor: server metadata,
 * model metadata and readiness, and inference, each unversioned and under
 * `/versions/{v}`. Errors are the protocol's `{"error": "<message>"}`.
 */
export function oipRouter(deps: OipDeps): express.Router {
  const v2 = express.Router();
  const { predictor } = deps;
  v2.get('/', (_req, res) => void res.json({ name: 'edgefl-serving', version: '1', extensions: [] }));

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

  const infer = async (req: Request, res: Response) => {
    const ref = refOf(req);
    const body = await readModelRequest(req, res, deps, ref, oipInferRequest, 'inference request');
    const outputs = requestedOutputs(body);
    if (body.inputs.length !== 1) throw new InvalidInput('invalid_input', `this model has one input, '${INPUT}'; the request has ${body.inputs.length}`);
    const input = body.inputs[0]!;
    if (input.name !== INPUT) throw new InvalidInput('invalid_input', `input '${input.name}' is not an input of this model; its input is '${INPUT}' (${V2_SUPPORTED.join('/')}, shape [-1,${predictor.spec.inputShape.join(',')}])`);
    refuseBinary(input.parameters, `input '${input.name}'`);
    const prediction = await predictor.predict(imagesFromV2(input, deps.maxBatch, predictor.spec.inputShape), ref);
    res.setHeader('X-Model-Version', String(prediction.model.version));
    res.json({
      model_name: predictor.name,
      model_version: String(prediction.model.version),
      ...(body.id !== undefined ? { id: body.id } : {}),
      outputs: outputs.map((name) => OUTPUTS[name](prediction)),
    });
  };
  v2.post('/models/:name/infer', requireKey(deps.apiKeys), infer);
  v2.post('/models/:name/versions/:version/infer', requireKey(deps.apiKeys), infer);
  v2.use((req, res) => void res.status(404).json({ error: `no route for ${req.method} /v2${req.path}` }));
  v2.use(protocolErrors(deps.log, (e) => ({ error: e.message })));
  return v2;
}

/** The outputs a request asks for (all, in model order, when it names none); binary data is refused. */
function requestedOutputs(body: OipInferRequest): OutputName[] {
  refuseBinary(body.parameters, 'the request');
  if (!body.outputs) return Object.keys(OUTPUTS) as OutputName[];
  const names: OutputName[] = [];
  for (const o of body.outputs) {
    if (!(o.name in OUTPUTS)) throw new InvalidInput('invalid_output', `output '${o.name}' is not an output of this model; its outputs are ${Object.keys(OUTPUTS).join(', ')}`);
    if (names.includes(o.name as OutputName)) throw new InvalidInput('invalid_output', `output '${o.name}' is requested twice`);
    refuseBinary(o.parameters, `output '${o.name}'`);
    names.push(o.name as OutputName);
  }
  return names;
}

/** The binary tensor data extension is not implemented: asking for it is a clear 400, not a silent JSON answer. */
function refuseBinary(parameters: Record<string, unknown> | undefined, where: string): void {
  const asked = ['binary_data', 'binary_data_output', 'binary_data_size'].find((k) => parameters?.[k] !== undefined && parameters[k] !== false);
  if (asked) throw new InvalidInput('binary_data_unsupported', `${where} sets parameter '${asked}': the binary tensor data extension is not supported; send and receive tensors as JSON data`);
}

import { existsSync } from 'node:fs';
import path from 'node:path';
import { ENV } from '../shared/config.js';
import { REFERENCE_CNN, inputSize, type ModelSpec } from '../core/model-spec.js';
import { text } from './flags.js';
import { BUILTIN_MODELS, builtinModel } from '../core/model-zoo.js';

/** `edgefl up`'s flags for a user's own model and each node's own data (spread into UP_FLAGS). */
export const BYOM_UP_FLAGS = {
  model: text(`a TensorFlow.js Layers model.json to train and serve, or a built-in model (${Object.keys(BUILTIN_MODELS).join(', ')}; default: the reference CNN, or $${ENV.model})`, { arg: 'FILE|NAME' }),
  'node-data': text(`node-local data: DIR/node-<i>/ for node i when present, else DIR for every node (IDX, CSV or <class>/<image> folders; $${ENV.nodeData})`, { arg: 'DIR' }),
  'eval-data': text(`the aggregator's held-out data (default: DIR/eval of --node-data when present, else the dataset's test split; $${ENV.evalData})`, { arg: 'DIR' }),
};

/** The shared environment these flags set (the model and the held-out data); paths are made absolute for the children. */
export function byomEnv(v: { model?: string; 'node-data'?: string; 'eval-data'?: string }): Record<string, string> {
  const env: Record<string, string> = {};
  if (v.model) env[ENV.model] = builtinModel(v.model) ? v.model : path.resolve(v.model);
  if (v['node-data']) env[ENV.nodeData] = path.resolve(v['node-data']);
  const evalDir = v['eval-data'] ?? (v['node-data'] && existsSync(path.join(v['node-data'], 'eval')) ? path.join(v['node-data'], 'eval') : undefined);
  if (evalDir) env[ENV.evalData] = path.resolve(evalDir);
  return env;
}

/** Node i's data directory: DIR/node-<i> when the directory is laid out per node, else DIR itself. */
export function nodeDataEnv(env: Record<string, string>, nodeId: number): Record<string, string> {
  const dir = env[ENV.nodeData];
  if (!dir) return {};
  const own = path.join(dir, `node-${nodeId}`);
  return { [ENV.nodeData]: existsSync(own) ? own : dir };
}

/** The "try one" line `up` prints: a blank input of the served model's shape. */
export function tryOneHint(url: string, spec: ModelSpec = REFERENCE_CNN): string {
  return `\nTry one (a blank ${spec.inputShape.join('x')} input):\n  curl -s -X POST ${url}/v1/models/${spec.name}:predict -H 'content-type: application/json' \\\n    -d "{\\"instances\\": [$(node -e 'console.log(JSON.stringify(Array(${inputSize(spec)}).fill(0)))')]}"`;
}

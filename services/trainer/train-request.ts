import { asObject, enumField, intField, numberField, stringField, timeField } from '../http/validate.js';
import type { OptimizerName } from '../core/train.js';
import { badRequest } from '../http/errors.js';
import { parseDpConfig, type DpConfig } from '../core/privacy/config.js';

/** What the aggregator asks a node to do for one round (the data of a dev.edgefl.round.train event). */
export interface TrainRequest {
  runId: string;
  round: number;
  modelVersion: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
  proximalMu: number;
  deadline: Date;
  seed: number;
  /** Record-level DP-SGD on this node, when the run asks for it (mode 'local'). */
  dp?: DpConfig;
}

export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function parseTrainRequest(data: unknown, now = Date.now()): TrainRequest {
  const o = asObject(data, 'event data');
  return {
    runId: stringField(o, 'runId', { pattern: RUN_ID_PATTERN, maxLength: 64 }),
    round: intField(o, 'round', { min: 1, max: 1_000_000 }),
    modelVersion: intField(o, 'modelVersion', { min: 1 }),
    epochs: intField(o, 'epochs', { min: 1, max: 100, default: 1 }),
    batchSize: intField(o, 'batchSize', { min: 1, max: 4096, default: 32 }),
    learningRate: numberField(o, 'learningRate', { min: 1e-7, max: 10, default: 0.001 }),
    optimizer: enumField(o, 'optimizer', ['adam', 'sgd'] as const, 'adam'),
    proximalMu: numberField(o, 'proximalMu', { min: 0, max: 1000, default: 0 }),
    deadline: timeField(o, 'deadline', new Date(now + 10 * 60_000)),
    seed: intField(o, 'seed', { min: 0, max: 2 ** 31, default: 1 }),
    dp: dpField(o.dp),
  };
}

function dpField(value: unknown): DpConfig | undefined {
  try {
    return parseDpConfig(value);
  } catch (e) {
    throw badRequest('invalid_field', (e as Error).message);
  }
}

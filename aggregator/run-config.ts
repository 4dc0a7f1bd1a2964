import { asObject, enumField, intField, numberField, stringListField } from '../services/http/validate.js';
import { badRequest } from '../services/http/errors.js';
import { STRATEGIES, type StrategyName } from './strategies.js';

/** Everything that defines a training run; stored with the run so a resumed run behaves the same. */
export interface RunConfig {
  /** Node ids to use (default: every known trainer). */
  nodes: string[] | null;
  rounds: number;
  targetAccuracy: number;
  patience: number;
  minQuorum: number;
  fraction: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: 'adam' | 'sgd';
  strategy: StrategyName;
  proximalMu: number;
  serverMomentum: number;
  serverLearningRate: number;
  trimFraction: number;
  roundTimeoutS: number;
  maxRoundAttempts: number;
  maxUpdateNorm: number | null;
  normPolicy: 'clip' | 'reject';
  init: 'fresh' | 'latest';
  seed: number;
}

export const DEFAULT_RUN: RunConfig = {
  nodes: null,
  rounds: 20,
  targetAccuracy: 0.985,
  patience: 5,
  minQuorum: 1,
  fraction: 1,
  epochs: 2,
  batchSize: 32,
  learningRate: 0.001,
  optimizer: 'adam',
  strategy: 'fedavg',
  proximalMu: 0.01,
  serverMomentum: 0.9,
  serverLearningRate: 1,
  trimFraction: 0.34,
  roundTimeoutS: 300,
  maxRoundAttempts: 3,
  maxUpdateNorm: null,
  normPolicy: 'clip',
  init: 'fresh',
  seed: 1,
};

export function parseRunConfig(body: unknown, defaults: Partial<RunConfig> = {}): RunConfig {
  const o = asObject(body ?? {});
  const d = { ...DEFAULT_RUN, ...defaults };
  const known = new Set(Object.keys(DEFAULT_RUN));
  const unknown = Object.keys(o).filter((k) => !known.has(k));
  if (unknown.length) throw badRequest('unknown_field', `unknown field(s): ${unknown.join(', ')}`);
  const maxNorm = o.maxUpdateNorm === undefined || o.maxUpdateNorm === null ? d.maxUpdateNorm : numberField(o, 'maxUpdateNorm', { min: 1e-6 });
  const cfg: RunConfig = {
    nodes: o.nodes === undefined || o.nodes === null ? d.nodes : stringListField(o, 'nodes'),
    rounds: intField(o, 'rounds', { min: 1, max: 10_000, default: d.rounds }),
    targetAccuracy: numberField(o, 'targetAccuracy', { min: 0, max: 1, default: d.targetAccuracy }),
    patience: intField(o, 'patience', { min: 1, max: 10_000, default: d.patience }),
    minQuorum: intField(o, 'minQuorum', { min: 1, max: 10_000, default: d.minQuorum }),
    fraction: numberField(o, 'fraction', { min: 0.01, max: 1, default: d.fraction }),
    epochs: intField(o, 'epochs', { min: 1, max: 100, default: d.epochs }),
    batchSize: intField(o, 'batchSize', { min: 1, max: 4096, default: d.batchSize }),
    learningRate: numberField(o, 'learningRate', { min: 1e-7, max: 10, default: d.learningRate }),
    optimizer: enumField(o, 'optimizer', ['adam', 'sgd'] as const, d.optimizer),
    strategy: enumField(o, 'strategy', STRATEGIES, d.strategy),
    proximalMu: numberField(o, 'proximalMu', { min: 0, max: 1000, default: d.proximalMu }),
    serverMomentum: numberField(o, 'serverMomentum', { min: 0, max: 0.999, default: d.serverMomentum }),
    serverLearningRate: numberField(o, 'serverLearningRate', { min: 1e-4, max: 10, default: d.serverLearningRate }),
    trimFraction: numberField(o, 'trimFraction', { min: 0, max: 0.49, default: d.trimFraction }),
    roundTimeoutS: numberField(o, 'roundTimeoutS', { min: 1, max: 24 * 3600, default: d.roundTimeoutS }),
    maxRoundAttempts: intField(o, 'maxRoundAttempts', { min: 1, max: 100, default: d.maxRoundAttempts }),
    maxUpdateNorm: maxNorm,
    normPolicy: enumField(o, 'normPolicy', ['clip', 'reject'] as const, d.normPolicy),
    init: enumField(o, 'init', ['fresh', 'latest'] as const, d.init),
    seed: intField(o, 'seed', { min: 0, max: 2 ** 31, default: d.seed }),
  };
  return cfg;
}

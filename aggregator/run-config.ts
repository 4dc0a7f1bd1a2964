import { z } from 'zod';
import { asObject } from '../services/http/validate.js';
import { badRequest } from '../services/http/errors.js';
import { STRATEGIES, createStrategy, type StrategyName } from './strategies.js';
import { dpConfigSchema, dpStrategyIssue } from '../services/core/privacy/config.js';
import { ASYNC_RUN_FIELDS } from './async/config.js';
import { modelRunFields } from './run-model-config.js';
import { SECAGG_RUN_FIELDS, secaggIssue } from './secagg/config.js';
import { SAMPLING_FIELDS } from './round/availability.js';

/**
 * Everything that defines a training run, as one schema: its defaults are the only ones
 * (POST /runs, `edgefl up` and the strategies all read them from here). The parsed config
 * is stored with the run so a resumed run behaves the same.
 */
export const RunConfigSchema = z
  .object({
    /** Node ids to use (default: every known trainer). */
    nodes: z.array(z.string().min(1).max(128)).max(10_000).nullable().default(null),
    rounds: z.number().int().min(1).max(10_000).default(20),
    targetAccuracy: z.number().min(0).max(1).default(0.985),
    patience: z.number().int().min(1).max(10_000).default(5),
    /** Accepted updates a round needs; defaults to the strategy's own minimum (3 for the median) when not given. */
    minQuorum: z.number().int().min(1).max(10_000).default(1),
    fraction: z.number().min(0.01).max(1).default(1),
    epochs: z.number().int().min(1).max(100).default(2),
    batchSize: z.number().int().min(1).max(4096).default(32),
    learningRate: z.number().min(1e-7).max(10).default(0.001),
    optimizer: z.enum(['adam', 'sgd']).default('adam'),
    strategy: z.enum(STRATEGIES as [StrategyName, ...StrategyName[]]).default('fedavg'),
    proximalMu: z.number().min(0).max(1000).default(0.01),
    serverMomentum: z.number().min(0).max(0.999).default(0.9),
    serverLearningRate: z.number().min(1e-4).max(10).default(1),
    /** Trimmed mean: share cut at each end per coordinate; 0.34 cuts one of three, so three nodes tolerate one bad one. */
    trimFraction: z.number().min(0).max(0.49).default(0.34),
    roundTimeoutS: z.number().min(1).max(24 * 3600).default(300),
    maxRoundAttempts: z.number().int().min(1).max(100).default(3),
    maxUpdateNorm: z.number().min(1e-6).nullable().default(null),
    normPolicy: z.enum(['clip', 'reject']).default('clip'),
    // fresh: a new random model; latest: the newest published version (a candidate, however good);
    // promoted: what the fleet serves (falls back to fresh when nothing is promoted yet).
    init: z.enum(['fresh', 'latest', 'promoted']).default('fresh'),
    seed: z.number().int().min(0).max(2 ** 31).default(1),
    /** Which round models become the promoted (served) version. */
    promote: z.enum(['best', 'latest', 'manual']).default('best'),
    /** 'best' promotes only a candidate at least this much more accurate than the promoted version. */
    minImprovement: z.number().min(0).max(1).default(0),
    /** Differential privacy (services/core/privacy/config.ts): record-level DP-SGD on the nodes or client-level DP-FedAvg. */
    dp: dpConfigSchema.nullable().default(null),
    /** Asynchronous aggregation (strategy fedbuff): buffer size, concurrency, staleness bound and weighting. */
    ...ASYNC_RUN_FIELDS,
    /** The model to train (aggregator/run-model-config.ts); null: the deployment's. */
    ...modelRunFields,
    /** Secure aggregation (aggregator/secagg/config.ts): threshold and quantization of strategy secagg-fedavg. */
    ...SECAGG_RUN_FIELDS,
    /** Nodes that come and go, and a floor on each round's sample (aggregator/round/availability.ts). */
    ...SAMPLING_FIELDS,
  })
  .strict();

export type RunConfig = z.infer<typeof RunConfigSchema>;

/** Every default, as the schema gives it. */
export const DEFAULT_RUN: RunConfig = RunConfigSchema.parse({});

/**
 * Parses a POST /runs body over the deployment's defaults (`edgefl up` passes its quorum).
 * A field left out (or null) takes its default; a robust strategy raises a defaulted quorum
 * to what it needs, while an explicit quorum below that is refused.
 */
export function parseRunConfig(body: unknown, defaults: Partial<RunConfig> = {}): RunConfig {
  const given = Object.fromEntries(Object.entries(asObject(body ?? {})).filter(([, v]) => v !== null));
  const parsed = RunConfigSchema.safeParse({ ...defaults, ...given });
  if (!parsed.success) throw badRequest(...describeIssue(parsed.error.issues[0]!));
  const config = parsed.data;
  const dpIssue = dpStrategyIssue(config.strategy, config.dp);
  if (dpIssue) throw badRequest('invalid_field', dpIssue);
  const secureIssue = secaggIssue(config);
  if (secureIssue) throw badRequest('invalid_field', secureIssue);
  const strategy = createStrategy(config.strategy, config);
  if (config.strategy === 'trimmed-mean' && !Number.isFinite(strategy.minUpdates)) {
    throw badRequest('invalid_field', `'trimFraction' must be > 0 for trimmed-mean: it has to cut at least one value per side to be robust`);
  }
  if (given.minQuorum === undefined) return { ...config, minQuorum: Math.max(config.minQuorum, strategy.minUpdates) };
  if (config.minQuorum < strategy.minUpdates) {
    throw badRequest('invalid_field', `'minQuorum' must be >= ${strategy.minUpdates} for ${config.strategy}: with fewer updates it is no more robust than a plain mean`);
  }
  return config;
}

/** One zod issue as a one-line message naming the field. */
function describeIssue(issue: z.core.$ZodIssue): [code: string, message: string] {
  if (issue.code === 'unrecognized_keys') return ['unknown_field', `unknown field(s): ${issue.keys.join(', ')}`];
  const field = issue.path.length ? issue.path.map(String).join('.') : 'body';
  return ['invalid_field', `'${field}': ${issue.message}`];
}

/**
 * Why this config cannot run on `nodes` trainers, or undefined: its quorum exceeds them, or a
 * round's sample (⌈fraction·nodes⌉) is smaller than the strategy needs to stay robust.
 */
export function unreachableQuorum(config: RunConfig, nodes: number): string | undefined {
  if (config.minQuorum > nodes) return `minQuorum ${config.minQuorum} exceeds the ${nodes} available nodes`;
  const perRound = Math.max(1, Math.ceil(config.fraction * nodes));
  const needed = createStrategy(config.strategy, config).minUpdates;
  if (needed > perRound) return `${config.strategy} needs ${needed} updates per round, but fraction ${config.fraction} of ${nodes} nodes chooses ${perRound}`;
  return undefined;
}

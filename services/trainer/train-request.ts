import { z } from 'zod';
import { badRequest } from '../http/errors.js';
import { dpConfigSchema } from '../core/privacy/config.js';
import { secaggRequestSchema } from './secagg-request.js';
import { trainingMiB } from './batch-memory.js';
import { REFERENCE_CNN, type ModelSpec } from '../core/model-spec.js';

export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The largest batch any trainer accepts, whatever its memory. */
export const MAX_BATCH_SIZE = 4096;

/**
 * Measured with the wasm backend (one epoch, RSS peak minus RSS before): batch 256 took
 * +248 MiB, batch 1024 +1072 MiB, so about 1.07 MiB of activations and gradients per
 * sample; a started trainer (runtime, shard, model, pool) holds about 190 MiB.
 */
export const TRAINER_BASE_MIB = 192;
/** The reference CNN's, as measured; batch-memory.ts scales other models' from their layers. */
export const TRAINING_MIB_PER_SAMPLE = 1.1;

/**
 * The largest batch of `spec` (the reference CNN's unless told) that trains within `limitMiB`, from
 * the model's own activations (batch-memory.ts); at least 1 so a trainer can always make progress.
 */
export function maxBatchForMemory(limitMiB: number, spec: ModelSpec = REFERENCE_CNN): number {
  const mib = trainingMiB(spec);
  return Math.max(1, Math.min(MAX_BATCH_SIZE, Math.floor((limitMiB - TRAINER_BASE_MIB - mib.fixed) / mib.perSample)));
}

/** The 400 for a batch above what this trainer's memory allows for the run's model (the same words the request schema uses). */
export function refuseBatchAboveMemory(batchSize: number, maxBatchSize: number): void {
  if (batchSize > maxBatchSize) {
    throw badRequest('invalid_field', `'batchSize' must be <= ${maxBatchSize}, the largest batch this trainer's memory limit allows for the run's model (set EDGEFL_MEMORY_LIMIT_MIB or give it more memory)`);
  }
}

// null means "use the default", as absent does.
const opt = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === null ? undefined : v), schema);
const int = (min: number, max: number) => z.number({ error: 'must be an integer' }).int({ error: 'must be an integer' }).min(min, { error: `must be >= ${min}` }).max(max, { error: `must be <= ${max}` });
const num = (min: number, max: number) => z.number({ error: 'must be a finite number' }).min(min, { error: `must be >= ${min}` }).max(max, { error: `must be <= ${max}` });
/** An ISO-8601 time or epoch milliseconds. */
const time = z.union([z.string(), z.number()], { error: 'must be an ISO-8601 time or epoch milliseconds' }).transform((v, ctx) => {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) ctx.addIssue({ code: 'custom', message: 'must be an ISO-8601 time or epoch milliseconds' });
  return d;
});

/** What the aggregator asks a node to do for one round (the data of a dev.edgefl.round.train event). */
function trainRequestSchema(maxBatchSize: number, now: number) {
  return z.object({
    runId: z.string({ error: 'must be a non-empty string' }).max(64, { error: 'is too long' }).regex(RUN_ID_PATTERN, { error: 'has an invalid format' }),
    round: int(1, 1_000_000),
    modelVersion: int(1, Number.MAX_SAFE_INTEGER),
    epochs: opt(int(1, 100).default(1)),
    batchSize: opt(
      int(1, MAX_BATCH_SIZE)
        .max(maxBatchSize, { error: `must be <= ${maxBatchSize}, the largest batch this trainer's memory limit allows (set EDGEFL_MEMORY_LIMIT_MIB or give it more memory)` })
        .default(Math.min(32, maxBatchSize)),
    ),
    learningRate: opt(num(1e-7, 10).default(0.001)),
    optimizer: opt(z.enum(['adam', 'sgd'], { error: 'must be one of adam, sgd' }).default('adam')),
    proximalMu: opt(num(0, 1000).default(0)),
    deadline: opt(time.default(() => new Date(now + 10 * 60_000))),
    seed: opt(int(0, 2 ** 31).default(1)),
    /** Record-level DP-SGD on this node, when the run asks for it (mode 'local'). */
    dp: opt(dpConfigSchema.optional()),
    /** Secure aggregation: the protocol stage and its parameters (services/trainer/secagg-round.ts). */
    secagg: opt(secaggRequestSchema.optional()),
  });
}

export type TrainRequest = z.output<ReturnType<typeof trainRequestSchema>>;

const REQUIRED = ['runId', 'round', 'modelVersion'] as const;

/** Parses a train event's data; anything wrong is a 400 naming the first bad field. */
export function parseTrainRequest(data: unknown, opts: { maxBatchSize?: number; now?: number } = {}): TrainRequest {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw badRequest('invalid_body', 'event data must be a JSON object');
  const fields = data as Record<string, unknown>;
  // Required fields first, so a request missing one is told so rather than about a later field.
  for (const name of REQUIRED) if (fields[name] === undefined || fields[name] === null) throw badRequest('missing_field', `'${name}' is required`);
  const parsed = trainRequestSchema(opts.maxBatchSize ?? MAX_BATCH_SIZE, opts.now ?? Date.now()).safeParse(fields);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw badRequest('invalid_field', `'${issue.path.join('.')}' ${issue.message}`);
}

import { z } from 'zod';
import { InvalidInput } from './errors.js';

/**
 * Request envelopes of both protocols, as zod schemas. Tensor data itself is walked by
 * tensor-input.ts (a schema over millions of numbers would cost more than the prediction).
 */
const parameters = z.record(z.string(), z.unknown());

export const tfPredictRequest = z.looseObject({
  signature_name: z.string().optional(),
  instances: z.unknown().optional(),
  inputs: z.unknown().optional(),
});

export const oipInferRequest = z.looseObject({
  id: z.string().optional(),
  parameters: parameters.optional(),
  inputs: z
    .array(
      z.looseObject({
        name: z.string(),
        shape: z.unknown(),
        datatype: z.unknown(),
        parameters: parameters.optional(),
        data: z.unknown().optional(),
      }),
    )
    .min(1),
  outputs: z.array(z.looseObject({ name: z.string(), parameters: parameters.optional() })).optional(),
});

export type OipInferRequest = z.infer<typeof oipInferRequest>;

/** Parses `value` or throws InvalidInput naming the first problem and where it is. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidInput('invalid_body', `${what} must be a JSON object`);
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length ? `'${issue.path.join('.')}'` : what;
  const code = issue.code === 'invalid_type' && /undefined/.test(issue.message) ? 'missing_field' : 'invalid_field';
  throw new InvalidInput(code, `${where}: ${issue.message}`);
}

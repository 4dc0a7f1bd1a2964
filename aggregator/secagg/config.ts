/**
 * The run settings of secure aggregation (strategy 'secagg-fedavg'), merged into the run
 * schema as one field, and the combinations POST /runs refuses with a 400.
 */
import { z } from 'zod';

export const secaggConfigSchema = z
  .object({
    /** t: shares that rebuild a secret, so the fewest survivors a round needs; default a majority of the round's nodes (at least 2). */
    threshold: z.number().int().min(2).max(10_000).nullable().default(null),
    /** c: each weighted update value is clipped to [−c, c] before quantization. */
    clipRange: z.number().positive().max(1e6).default(1),
    /** Bits per value in Z_2^32: 22 leaves 10 bits of headroom, sums of up to 1024 nodes. */
    bits: z.number().int().min(8).max(30).default(22),
    /** A node's weight is min(1, samples / maxWeight); counts are capped here. */
    maxWeight: z.number().int().min(1).max(2 ** 22).default(10_000),
  })
  .strict();

export type SecaggConfig = z.output<typeof secaggConfigSchema>;

export const SECAGG_RUN_FIELDS = { secagg: secaggConfigSchema.nullable().default(null) };

export const SECAGG_STRATEGY = 'secagg-fedavg';

/** The threshold for a round of n nodes: the configured one, else a majority (at least 2). */
export function roundThreshold(config: SecaggConfig | null, n: number): number {
  return config?.threshold ?? Math.max(2, Math.floor(n / 2) + 1);
}

/** Why this run config cannot work with secure aggregation, or undefined. */
export function secaggIssue(c: { strategy: string; secagg: SecaggConfig | null; maxUpdateNorm: number | null }): string | undefined {
  if (c.strategy !== SECAGG_STRATEGY) {
    if (c.secagg) return `'secagg' needs 'strategy' ${SECAGG_STRATEGY}: ${c.strategy} needs every node's update, which secure aggregation never reveals (median, trimmed mean and per-update screening cannot run on a sum)`;
    return undefined;
  }
  if (c.maxUpdateNorm !== null) {
    return `'maxUpdateNorm' cannot screen individual updates under ${SECAGG_STRATEGY}: the aggregator sees only their sum. Bound each node's influence with dp.clip (nodes clip before masking) or secagg.clipRange`;
  }
  const cfg = c.secagg ?? secaggConfigSchema.parse({});
  if (2 ** (32 - cfg.bits) < 2) return `'secagg.bits' ${cfg.bits} leaves no headroom in Z_2^32 for a sum of two nodes`;
  return undefined;
}

import { z } from 'zod';

/**
 * The run settings of asynchronous aggregation (strategy 'fedbuff'), merged into the run
 * schema (aggregator/run-config.ts). Defaults follow FedBuff (Nguyen et al. 2022) scaled
 * down to a handful of nodes: the paper buffers K = 10 of ~1000 concurrent clients and
 * weights an update τ aggregations stale by 1/√(1+τ).
 */
export const ASYNC_RUN_FIELDS = {
  /** K: updates buffered before the server aggregates them into a new global version. */
  bufferSize: z.number().int().min(1).max(10_000).default(3),
  /** Nodes training at once; null: every eligible node. */
  concurrency: z.number().int().min(1).max(10_000).nullable().default(null),
  /** An update whose base is more than this many aggregations old is discarded (and counted). */
  maxStaleness: z.number().int().min(0).max(10_000).default(10),
  /** a in s(τ) = (1+τ)^-a; 0.5 is the paper's 1/√(1+τ), 0 ignores staleness. */
  stalenessExponent: z.number().min(0).max(10).default(0.5),
};

export interface AsyncRunConfig {
  bufferSize: number;
  concurrency: number | null;
  maxStaleness: number;
  stalenessExponent: number;
}

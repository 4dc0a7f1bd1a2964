/**
 * The secure-aggregation part of a round's train event (data.secagg): which stage of the
 * protocol the aggregator asks for, and the round's public parameters.
 */
import { z } from 'zod';

export const SECAGG_STAGES = ['advertise', 'share', 'mask', 'unmask'] as const;
export type SecaggStage = (typeof SECAGG_STAGES)[number];

const nodeIds = z.array(z.string().min(1).max(128)).max(10_000);

export const secaggRequestSchema = z
  .object({
    stage: z.enum(SECAGG_STAGES),
    /** The round's attempt (rounds.attempt): a retried round runs the protocol afresh. */
    attempt: z.number().int().min(1).max(1000),
    /** t: shares needed to rebuild a secret; at least 2, so no single answer unmasks anything. */
    threshold: z.number().int().min(2).max(10_000),
    /** share: U1 (who advertised); mask and unmask: U2 (who shared). */
    roster: nodeIds.default([]),
    /** unmask: U3 (whose masked inputs the aggregator holds). */
    survivors: nodeIds.default([]),
    clipRange: z.number().positive().max(1e6).default(1),
    bits: z.number().int().min(8).max(30).default(22),
    maxWeight: z.number().int().min(1).max(2 ** 22).default(10_000),
    /** Client-level DP: the L2 clip of the node's update, applied before masking; equal weights then. */
    dpClip: z.number().positive().max(1e6).nullable().default(null),
  })
  .strict();

export type SecaggRequest = z.output<typeof secaggRequestSchema>;

/**
 * The privacy settings a run asks for, validated once with zod and shared by the
 * aggregator (POST /runs) and the trainer (each round's request).
 *
 * - mode 'local': record-level DP-SGD on every node (noiseMultiplier σ, clip C per example).
 * - mode 'central': client-level DP-FedAvg at the aggregator (clip per update).
 * - epsilonBudget / delta: each node's total (ε, δ) across rounds AND runs; a node refuses
 *   a round that would take it past the budget.
 */
import { z } from 'zod';
import { dpSgdEpsilon } from './rdp.js';

export const DP_MODES = ['local', 'central'] as const;
export type DpMode = (typeof DP_MODES)[number];

export const dpConfigSchema = z
  .object({
    mode: z.enum(DP_MODES).default('local'),
    epsilonBudget: z.number().positive().max(1000),
    // δ should be well below 1/N; anything ≥ 0.01 gives no meaningful guarantee.
    delta: z.number().positive().max(0.01).default(1e-5),
    noiseMultiplier: z.number().positive().max(1000),
    clip: z.number().positive().max(1e6).default(1),
    /** central only: C follows a quantile of the update norms (adaptive-clip.ts); dp.clip is its start. */
    adaptiveClip: z
      .object({
        targetQuantile: z.number().min(0).max(1).default(0.5),
        learningRate: z.number().positive().max(10).default(0.2),
        countNoiseMultiplier: z.number().positive().max(1e6),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((dp, ctx) => {
    if (!dp.adaptiveClip) return;
    if (dp.mode !== 'central') ctx.addIssue({ code: 'custom', path: ['adaptiveClip'], message: "adaptive clipping is for mode 'central' (client-level DP-FedAvg)" });
    else if (2 * dp.adaptiveClip.countNoiseMultiplier <= dp.noiseMultiplier) {
      ctx.addIssue({ code: 'custom', path: ['adaptiveClip', 'countNoiseMultiplier'], message: `must exceed dp.noiseMultiplier / 2 = ${dp.noiseMultiplier / 2}: the clipped-count bits are paid for out of the same σ` });
    }
  });

export type DpConfig = z.infer<typeof dpConfigSchema>;

/** One line per problem, "dp.field: message", for a 400 body. */
export function describeDpIssues(error: z.ZodError): string {
  return error.issues.map((i) => `dp${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`).join('; ');
}

/** undefined when absent (no DP); the parsed config; or throws with a readable message. */
export function parseDpConfig(value: unknown): DpConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const r = dpConfigSchema.safeParse(value);
  if (!r.success) throw new Error(describeDpIssues(r.error));
  return r.data;
}

/** What a run will do, as far as privacy cost goes. */
export interface RunShape {
  epochs: number;
  batchSize: number;
  /** Shard sizes of the nodes that may take part (unknown nodes: leave empty). */
  shardSizes: readonly number[];
  /** Clients per round / clients in the federation (central mode). */
  participationRate: number;
}

/**
 * Settings that can never train: a budget that not even one round fits in, or a δ so
 * large that the guarantee is void (δ ≥ 1/N allows publishing a record outright).
 * Returns readable problems; empty when the run is feasible.
 */
export function dpProblems(dp: DpConfig, run: RunShape): string[] {
  const problems: string[] = [];
  if (dp.mode === 'local') {
    for (const n of new Set(run.shardSizes)) {
      if (dp.delta >= 1 / n) problems.push(`dp.delta ${dp.delta} is not below 1/N for a node holding ${n} records`);
      const oneRound = dpSgdEpsilon({ samplingRate: Math.min(1, run.batchSize / n), noiseMultiplier: dp.noiseMultiplier, steps: run.epochs * Math.ceil(n / run.batchSize), delta: dp.delta }).epsilon;
      if (oneRound > dp.epsilonBudget) problems.push(`one round on a node holding ${n} records costs ε = ${oneRound.toFixed(2)}, above dp.epsilonBudget ${dp.epsilonBudget}: raise dp.noiseMultiplier or the budget`);
    }
  } else {
    const oneRound = dpSgdEpsilon({ samplingRate: run.participationRate, noiseMultiplier: dp.noiseMultiplier, steps: 1, delta: dp.delta }).epsilon;
    if (oneRound > dp.epsilonBudget) problems.push(`one DP-FedAvg round costs client-level ε = ${oneRound.toFixed(2)}, above dp.epsilonBudget ${dp.epsilonBudget}: raise dp.noiseMultiplier or the budget`);
  }
  return problems;
}

/** The strategy and the DP mode must agree: client-level noise is the dp-fedavg strategy's job, and only its. */
export function dpStrategyIssue(strategy: string, dp: DpConfig | null): string | undefined {
  if (strategy === 'dp-fedavg' && dp?.mode !== 'central') return "'strategy' dp-fedavg needs 'dp' with mode 'central'";
  // secagg-fedavg: the nodes clip before masking and the aggregator noises the unmasked sum.
  if (dp?.mode === 'central' && strategy !== 'dp-fedavg' && strategy !== 'secagg-fedavg') return "'dp.mode' central needs 'strategy' dp-fedavg or secagg-fedavg";
  return undefined;
}

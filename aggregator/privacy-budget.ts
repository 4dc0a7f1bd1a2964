/**
 * The aggregator's view of privacy: which nodes can still afford a DP-SGD round (the others
 * are unavailable, as a node that is down would be), and the ε figures GET /runs/:id shows.
 * The nodes enforce their budgets themselves (403 privacy_budget_exhausted); this only
 * spares a round the refusals it can foresee, from the same ledger and shard sizes.
 */
import type pg from 'pg';
import { dpProblems } from '../services/core/privacy/config.js';
import { clientLevelEpsilon } from '../services/core/privacy/dp-fedavg.js';
import { dpSgdPlan } from '../services/core/privacy/dp-sgd.js';
import { ledgersOf, registeredNodeIds, spentEpsilon } from '../services/store/privacy-ledger.js';
import * as store from '../services/store/model-store.js';
import type { TrainerTarget } from './invoke.js';
import type { RunConfig } from './run-config.js';

type DpRun = Pick<RunConfig, 'dp' | 'epochs' | 'batchSize' | 'fraction'> & Partial<Pick<RunConfig, 'nodes'>>;

/** The trainer's refusal code: its message starts with it, so it survives into a round's node results. */
export const BUDGET_REFUSAL = 'privacy_budget_exhausted';

/** Nodes that refused an earlier round of this run for their budget (which never grows back). */
async function refusedInRun(pool: pg.Pool, runId: string): Promise<Set<string>> {
  const rounds = await store.listRounds(pool, runId);
  const nodes = rounds.flatMap((r) => (r.metrics.nodes ?? []) as { nodeId: string; reason?: string }[]);
  return new Set(nodes.filter((n) => n.reason?.includes(BUDGET_REFUSAL)).map((n) => n.nodeId));
}

/**
 * Trainers whose budget admits one more round of `runId`; all of them when the run is not
 * record-level DP. Foreseen from the ledger where the node registered its shard size,
 * otherwise learnt from the node's own refusal in an earlier round.
 */
export async function withinBudget(pool: pg.Pool, trainers: readonly TrainerTarget[], config: DpRun, runId: string): Promise<TrainerTarget[]> {
  const dp = config.dp;
  if (dp?.mode !== 'local') return [...trainers];
  const refused = await refusedInRun(pool, runId);
  const { sizes, ledgers } = await ledgersOf(pool, trainers.map((t) => t.nodeId));
  return trainers.filter((t) => {
    if (refused.has(t.nodeId)) return false;
    const n = sizes.get(t.nodeId);
    if (n === undefined) return true; // never registered: let the node decide
    const next = dpSgdPlan(n, config.epochs, config.batchSize, dp.noiseMultiplier);
    return spentEpsilon([...(ledgers.get(t.nodeId) ?? []), next], dp.delta) <= dp.epsilonBudget;
  });
}

/**
 * Why the run must end before its next round for privacy, or undefined: under `local`, no
 * trainer can afford another round; under `central`, one more round would take the
 * client-level ε past dp.epsilonBudget (the budget is the run's, spent round by round).
 */
export async function privacySpent(pool: pg.Pool, trainers: readonly TrainerTarget[], config: DpRun, runId: string, completedRounds: number): Promise<string | undefined> {
  const dp = config.dp;
  if (dp?.mode === 'local') return (await withinBudget(pool, trainers, config, runId)).length === 0 ? 'every node has spent its privacy budget' : undefined;
  if (dp?.mode !== 'central') return undefined;
  const next = clientLevelEpsilon({ rounds: completedRounds + 1, participationRate: config.fraction, noiseMultiplier: dp.noiseMultiplier, delta: dp.delta });
  return next > dp.epsilonBudget ? `another round would take the client-level ε to ${next.toFixed(3)}, past dp.epsilonBudget ${dp.epsilonBudget}` : undefined;
}

export interface PrivacyView {
  mode: 'local' | 'central';
  delta: number;
  epsilonBudget: number;
  /** local: each node's total ε over every run (its ledger); nodes without DP rounds are absent. */
  nodeEpsilon?: Record<string, number>;
  /** central: client-level ε of the rounds completed so far. */
  clientEpsilon?: number;
  /** central with dp.adaptiveClip: the clip norm the next round will use. */
  clip?: number;
}

export async function privacyView(pool: pg.Pool, config: DpRun, completedRounds: number, nodeIds: readonly string[], runId?: string): Promise<PrivacyView | undefined> {
  const dp = config.dp;
  if (!dp) return undefined;
  const base = { mode: dp.mode, delta: dp.delta, epsilonBudget: dp.epsilonBudget };
  if (dp.mode === 'central') {
    const clientEpsilon = clientLevelEpsilon({ rounds: completedRounds, participationRate: config.fraction, noiseMultiplier: dp.noiseMultiplier, delta: dp.delta });
    const clip = dp.adaptiveClip && runId ? await adaptiveClipOf(pool, runId) : undefined;
    return { ...base, clientEpsilon: Number(clientEpsilon.toFixed(4)), ...(clip !== undefined ? { clip: Number(clip.toPrecision(6)) } : {}) };
  }
  // A run that has not chosen anyone yet (or was ended at once for spent budgets) shows the nodes it may use.
  const ids = nodeIds.length ? nodeIds : (config.nodes ?? (await registeredNodeIds(pool)));
  const { ledgers } = await ledgersOf(pool, ids);
  return { ...base, nodeEpsilon: Object.fromEntries([...ledgers].map(([node, events]) => [node, Number(spentEpsilon(events, dp.delta).toFixed(4))])) };
}

/** The clip norm dp-fedavg saved after its last round (aggregator/dp-fedavg-strategy.ts). */
async function adaptiveClipOf(pool: pg.Pool, runId: string): Promise<number | undefined> {
  const state = await store.getStrategyState(pool, runId);
  const clip = state ? (JSON.parse(state.toString('utf8')) as { clip?: unknown }).clip : undefined;
  return typeof clip === 'number' ? clip : undefined;
}

/** dpProblems for a run about to start on `trainers`, with their registered shard sizes. */
export async function runPrivacyProblems(pool: pg.Pool, config: RunConfig, trainers: readonly TrainerTarget[]): Promise<string[]> {
  if (!config.dp || trainers.length === 0) return [];
  const { sizes } = await ledgersOf(pool, trainers.map((t) => t.nodeId));
  const perRound = Math.max(1, Math.ceil(config.fraction * trainers.length));
  return dpProblems(config.dp, { epochs: config.epochs, batchSize: config.batchSize, shardSizes: [...sizes.values()], participationRate: perRound / trainers.length });
}

import * as store from '../../services/store/model-store.js';
import type { RunConfig } from '../run-config.js';
import type { ScreenedUpdate, Strategy } from '../strategies.js';
import { fitRound, loadGlobal, openPlannedRound } from './fit.js';
import { planRound, type RoundPlan } from './plan.js';
import { judgeAndPublish, recordFailedRound } from './record.js';
import { applyVerdict, nodeResults, screenUpdate, shortfall, updatesInTime } from './screen.js';
import { runTensors, type NodeRoundResult, type RoundContext, type RoundSummary } from './types.js';
import { withinBudget } from '../privacy-budget.js';

/** Ends the update stream when the round cannot be aggregated: the strategy then changes nothing. */
class RoundShortfall extends Error {
  constructor(message: string, readonly accepted: number) {
    super(message);
  }
}

/**
 * One round, in the shape of Flower's fit_round: configure (plan, open), fit (invoke the
 * trainers), screen + aggregate (the strategy folds the screened updates as they stream),
 * evaluate, then publish or fail. Returns undefined when the run was aborted meanwhile.
 */
export async function runRound(ctx: RoundContext, run: store.RunRow, strategy: Strategy, round: number, signal: AbortSignal): Promise<RoundSummary | undefined> {
  const started = Date.now();
  const config = run.config as RunConfig;
  const existing = await store.getRound(ctx.pool, run.id, round);
  const plan = planRound({ round, strategy, trainers: await withinBudget(ctx.pool, await ctx.trainers(), config, run.id), config, latestVersion: run.latestVersion!, existing, now: started });
  const global = await loadGlobal(ctx, plan.baseVersion);
  await openPlannedRound(ctx, run.id, plan, strategy.name, { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate });
  const outcomes = await fitRound(ctx, run.id, plan, signal);
  if (signal.aborted) return undefined;

  const selected = plan.instructions.map((i) => i.target.nodeId);
  const updates = updatesInTime(await store.listUpdates(ctx.pool, run.id, round), { ...plan, selected });
  const nodes = nodeResults(selected, updates, outcomes);
  const aggStart = Date.now();
  let next: Float32Array;
  try {
    next = await strategy.aggregateFit(global, screened(ctx, updates, nodes, global, config, plan, strategy));
  } catch (e) {
    if (!(e instanceof RoundShortfall)) throw e;
    return recordFailedRound(ctx, run.id, plan, nodes, e.message, e.accepted, started);
  }
  return judgeAndPublish(ctx, run, plan, next, nodes, { started, aggregationMs: Date.now() - aggStart }, strategy.saveState?.(), signal);
}

/** Screens the round's stored updates one at a time, yielding those that count; ends with RoundShortfall when too few did. */
async function* screened(
  ctx: RoundContext,
  updates: readonly store.UpdateMeta[],
  nodes: NodeRoundResult[],
  global: Float32Array,
  config: RunConfig,
  plan: RoundPlan,
  strategy: Strategy,
): AsyncGenerator<ScreenedUpdate> {
  const policy = { spec: runTensors(ctx), maxUpdateNorm: config.maxUpdateNorm, normPolicy: config.normPolicy };
  let accepted = 0;
  for (const u of updates) {
    const verdict = screenUpdate({ ...u, bytes: await store.getUpdateBytes(ctx.pool, u.id) }, global, policy);
    applyVerdict(nodes.find((n) => n.nodeId === u.nodeId)!, verdict);
    if (!verdict.accepted) {
      ctx.metrics?.roundFailures.inc({ node: u.nodeId, reason: 'rejected_update' });
      continue;
    }
    accepted++;
    yield { nodeId: u.nodeId, weights: verdict.weights, samples: u.sampleCount };
  }
  const why = shortfall(accepted, plan.instructions.length, plan.required, plan.quorum, strategy);
  if (why) throw new RoundShortfall(why, accepted);
}

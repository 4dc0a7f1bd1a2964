import * as store from '../../services/store/model-store.js';
import type { RunConfig } from '../run-config.js';
import type { OwnRound, OwnRoundResult, ScreenedUpdate, Strategy } from '../strategies.js';
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
  // A strategy that runs its own protocol with the nodes (secure aggregation) replaces fit, screen and aggregate.
  const fitted = await (strategy.runRound ?? fitAndAggregate)({ ctx, runId: run.id, plan, global, config, strategy, signal });
  if (!fitted) return undefined;
  if ('failure' in fitted) return recordFailedRound(ctx, run.id, plan, fitted.nodes, fitted.failure, fitted.accepted, started);
  return judgeAndPublish(ctx, run, plan, fitted.next, fitted.nodes, { started, aggregationMs: fitted.aggregationMs }, strategy.saveState?.(), signal);
}

/** The plain round: invoke the trainers, then screen and fold their stored updates as they stream. */
async function fitAndAggregate({ ctx, runId, plan, global, config, strategy, signal }: OwnRound): Promise<OwnRoundResult | undefined> {
  const outcomes = await fitRound(ctx, runId, plan, signal);
  if (signal.aborted) return undefined;
  const selected = plan.instructions.map((i) => i.target.nodeId);
  const updates = updatesInTime(await store.listUpdates(ctx.pool, runId, plan.round), { ...plan, selected });
  const nodes = nodeResults(selected, updates, outcomes);
  const aggStart = Date.now();
  try {
    const next = await strategy.aggregateFit(global, screened(ctx, updates, nodes, global, config, plan, strategy));
    return { next, nodes, aggregationMs: Date.now() - aggStart };
  } catch (e) {
    if (!(e instanceof RoundShortfall)) throw e;
    return { nodes, failure: e.message, accepted: e.accepted };
  }
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

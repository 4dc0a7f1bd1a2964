import * as store from '../../services/store/model-store.js';
import { lastInvocation } from '../../services/store/async-updates.js';
import type { TrainerTarget } from '../invoke.js';
import { withinBudget } from '../privacy-budget.js';
import { loadGlobal } from '../round/fit.js';
import type { RoundContext } from '../round/types.js';
import type { RunConfig } from '../run-config.js';
import type { Strategy } from '../strategies.js';
import { createUpdateBuffer, type UpdateBuffer } from './buffer.js';
import type { AsyncAggregation } from './fedbuff-strategy.js';
import { FIRST_INVOCATION } from './schedule.js';
import { warmthSource } from '../warmth.js';

export type AsyncStrategy = Strategy & { async: AsyncAggregation };

/** An update that passed into the buffer, as the aggregation's round row reports it. */
export interface BufferedEntry {
  invocation: number;
  nodeId: string;
  samples: number;
  staleness: number;
  metrics: Record<string, any>;
  durationMs: number;
}

/** Everything the async driver keeps between arrivals; the store holds the rest (async_updates, rounds). */
export interface AsyncState {
  runId: string;
  config: RunConfig;
  strategy: AsyncStrategy;
  /** Aggregations published so far, and the newest global version with its weights. */
  aggregations: number;
  version: number;
  global: Float32Array;
  /** Global weights by aggregation number: the current one and those an invocation in flight trained from. */
  bases: Map<number, Float32Array>;
  /** Invocation → the aggregation it trains from, while it is in flight. */
  inflight: Map<number, number>;
  buffer: UpdateBuffer;
  buffered: BufferedEntry[];
  candidates: TrainerTarget[];
  busy: Set<string>;
  coolingUntil: Map<string, number>;
  failures: Map<string, number>;
  /** Warm-aware picks (aggregator/warmth.ts): each node's last invocation, its warm run, when it last came back (epoch ms). */
  lastInvoked: Map<string, number>;
  warmRun: Map<string, number>;
  lastDone: Map<string, number>;
  lastInvocation: number;
  /** When the current buffer started filling (epoch ms). */
  since: number;
}

/** The run's async state from the store: published aggregations, the newest version, the buffer left by a previous process. */
export async function openAsyncState(ctx: RoundContext, runId: string, strategy: AsyncStrategy): Promise<AsyncState> {
  const run = (await store.getRun(ctx.pool, runId))!;
  const aggregations = (await store.listRounds(ctx.pool, runId)).filter((r) => r.status === 'completed').length;
  const global = await loadGlobal(ctx, run.latestVersion!);
  const s: AsyncState = {
    runId,
    config: run.config as RunConfig,
    strategy,
    aggregations,
    version: run.latestVersion!,
    global,
    bases: new Map([[aggregations, global]]),
    inflight: new Map(),
    buffer: createUpdateBuffer(global.length, strategy.async.weight),
    buffered: [],
    candidates: [],
    busy: new Set(),
    coolingUntil: new Map(),
    failures: new Map(),
    lastInvoked: new Map(),
    warmRun: new Map(),
    lastDone: new Map(),
    lastInvocation: (await lastInvocation(ctx.pool, runId)) ?? FIRST_INVOCATION - 1,
    since: Date.now(),
  };
  s.candidates = await eligibleNodes(ctx, s);
  return s;
}

/** Starts the next buffer: after an aggregation, or when the driver starts. */
export function resetBuffer(s: AsyncState): void {
  s.buffer = createUpdateBuffer(s.global.length, s.strategy.async.weight);
  s.buffered = [];
  s.since = Date.now();
}

/** The run's nodes (config.nodes, or every trainer) that still have privacy budget. */
export async function eligibleNodes(ctx: RoundContext, s: Pick<AsyncState, 'config' | 'runId'>): Promise<TrainerTarget[]> {
  const all = await ctx.trainers();
  const chosen = s.config.nodes ? all.filter((t) => s.config.nodes!.includes(t.nodeId)) : all;
  return withinBudget(ctx.pool, chosen, s.config, s.runId);
}

/**
 * How many nodes train at once: the configured concurrency, at most the eligible nodes. Unset
 * behind an activator: as many as it runs processes (more would only queue there and evict
 * one another's warm processes).
 */
export function concurrencyOf(s: Pick<AsyncState, 'strategy' | 'candidates'>): number {
  return Math.min(s.strategy.async.concurrency ?? warmthSource()?.capacity ?? s.candidates.length, s.candidates.length);
}

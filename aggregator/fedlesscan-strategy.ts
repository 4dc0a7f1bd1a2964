/**
 * fedlesscan: FedAvg with straggler-aware selection (Elzohairy et al. 2022, FedLesScan).
 * Before each round the strategy reads the run's rounds so far (`observeRounds`) and keeps,
 * per node, how often it was asked, how often it missed (late or failed) and how long its
 * trainings took. It then chooses ⌈fraction·n⌉ nodes in tiers: nodes never asked first (every
 * shard is seen), then nodes left out for too long, then the fast cluster, then the slow one;
 * a node that just missed cools down for 1, 2, 4 … rounds and is chosen only if nothing else is left.
 *
 * No import of strategies.ts values: it registers this factory (see dp-fedavg-strategy.ts).
 */
import { createRng } from '../datasets/rng.js';
import type { RoundRow } from '../services/store/model-store.js';
import { weightedMean } from './round/aggregate.js';
import { warmFirst, warmthSource } from './warmth.js';
import type { FitConfig, StrategyFactory } from './strategies.js';

export type RoundHistoryRow = Pick<RoundRow, 'round' | 'status' | 'selected' | 'metrics'>;

export interface NodeHistory {
  invited: number;
  missed: number;
  /** Consecutive missed rounds up to the latest one it was asked to. */
  missStreak: number;
  /** Last round it was asked to (0: never), and last round it missed (0: never). */
  lastInvited: number;
  lastMissed: number;
  /** Training durations (ms) of the rounds it delivered, oldest first. */
  durations: number[];
}

/** Each node's record from the finished rounds (a round still running has no outcome yet). */
export function nodeHistories(rows: readonly RoundHistoryRow[]): Map<string, NodeHistory> {
  const out = new Map<string, NodeHistory>();
  for (const row of [...rows].sort((a, b) => a.round - b.round)) {
    if (row.status === 'running') continue;
    const results = (row.metrics.nodes ?? []) as { nodeId: string; status: string; durationMs?: number }[];
    for (const nodeId of row.selected) {
      const h = out.get(nodeId) ?? { invited: 0, missed: 0, missStreak: 0, lastInvited: 0, lastMissed: 0, durations: [] };
      out.set(nodeId, h);
      h.invited++;
      h.lastInvited = row.round;
      const r = results.find((x) => x.nodeId === nodeId);
      // A rejected update was delivered in time: a screening matter, not a straggler.
      if (!r || r.status === 'late' || r.status === 'failed') {
        h.missed++;
        h.missStreak++;
        h.lastMissed = row.round;
      } else {
        h.missStreak = 0;
        if (r.durationMs !== undefined) h.durations.push(r.durationMs);
      }
    }
  }
  return out;
}

/** Rounds a node sits out after its n-th consecutive miss: 1, 2, 4 … capped at 16. */
export const cooldownRounds = (missStreak: number) => Math.min(16, 2 ** Math.max(0, missStreak - 1));

/** A node's expected training time: the mean of its last three deliveries. */
function expectedMs(h: NodeHistory): number {
  const last = h.durations.slice(-3);
  return last.reduce((s, d) => s + d, 0) / last.length;
}

export type Tier = 'rookie' | 'overdue' | 'fast' | 'slow' | 'cooling';
const TIERS: Tier[] = ['rookie', 'overdue', 'fast', 'slow', 'cooling'];

/**
 * Each candidate's tier for `round`. Fast and slow split the nodes with known durations at
 * 1.5× their median (a straggler takes well over the typical time); a node that missed more
 * than half of its rounds is slow too; a node not asked for
 * `maxWait` rounds is overdue whatever its speed, so no shard drops out of the model.
 */
export function tiers(candidates: readonly string[], history: ReadonlyMap<string, NodeHistory>, round: number, maxWait: number): Map<string, Tier> {
  const known = candidates.filter((n) => history.get(n)?.durations.length).map((n) => expectedMs(history.get(n)!)).sort((a, b) => a - b);
  const median = known.length ? known[Math.floor((known.length - 1) / 2)]! : 0;
  const out = new Map<string, Tier>();
  for (const n of candidates) {
    const h = history.get(n);
    if (!h || h.invited === 0) out.set(n, 'rookie');
    else if (h.missStreak > 0 && round - h.lastMissed <= cooldownRounds(h.missStreak)) out.set(n, 'cooling');
    else if (round - h.lastInvited > maxWait) out.set(n, 'overdue');
    // Missing more often than delivering makes a node a straggler whatever its speed when it delivers.
    else if (h.missed * 2 > h.invited) out.set(n, 'slow');
    else if (!h.durations.length || expectedMs(h) <= 1.5 * median) out.set(n, 'fast');
    else out.set(n, 'slow');
  }
  return out;
}

/**
 * The round's `k` nodes, tier by tier; within a tier the nodes whose trainer is warm first
 * (where that is known: aggregator/warmth.ts), then the least recently asked, ties broken by
 * a seeded draw. Returned in the candidates' order.
 */
export function selectByReliability(candidates: readonly string[], history: ReadonlyMap<string, NodeHistory>, round: number, k: number, seed: number, warm: ReadonlySet<string> = new Set()): string[] {
  if (k >= candidates.length) return [...candidates];
  const maxWait = 2 * Math.ceil(candidates.length / Math.max(1, k));
  const tierOf = tiers(candidates, history, round, maxWait);
  const rng = createRng(seed * 1_000_003 + round);
  const draw = new Map(candidates.map((n) => [n, rng()]));
  const ranked = [...candidates].sort(
    (a, b) =>
      TIERS.indexOf(tierOf.get(a)!) - TIERS.indexOf(tierOf.get(b)!) ||
      Number(!warm.has(a)) - Number(!warm.has(b)) ||
      (history.get(a)?.lastInvited ?? 0) - (history.get(b)?.lastInvited ?? 0) ||
      draw.get(a)! - draw.get(b)!,
  );
  const chosen = new Set(ranked.slice(0, k));
  return candidates.filter((n) => chosen.has(n));
}

export const fedlesscan: StrategyFactory = (config) => {
  const fit: FitConfig = { epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate, optimizer: config.optimizer, proximalMu: 0, seed: config.seed };
  if (config.dp?.mode === 'local') fit.dp = config.dp;
  let history = new Map<string, NodeHistory>();
  return {
    name: 'fedlesscan',
    minUpdates: 1,
    observeRounds(rows) {
      history = nodeHistories(rows);
    },
    configureFit(round, candidates, keep) {
      const k = Math.max(1, Math.ceil(config.fraction * candidates.length));
      const warm = warmthSource()?.warm();
      const ids = keep ?? selectByReliability(candidates.map((c) => c.nodeId), history, round, k, config.seed, warm);
      return warmFirst(candidates.filter((c) => ids.includes(c.nodeId)), warm).map((target) => ({ target, config: { ...fit } }));
    },
    async aggregateFit(_global, updates) {
      const sum = weightedMean();
      for await (const u of updates) sum.add(u.weights, u.samples);
      return sum.result();
    },
  };
};

import { createRng } from '../../datasets/rng.js';
import type { TrainerTarget } from '../invoke.js';
import type { FitInstruction, Strategy } from '../strategies.js';
import { availableNodes } from './availability.js';
import { selectPreferringWarm, warmthSource } from '../warmth.js';

/** A seeded sample of ⌈fraction·n⌉ nodes (at least minCount, default one), different each round, reproducible per run. */
export function selectNodes<T>(nodes: readonly T[], fraction: number, seed: number, round: number, minCount = 1): T[] {
  const k = Math.max(minCount, 1, Math.ceil(fraction * nodes.length));
  if (k >= nodes.length) return [...nodes];
  const rng = createRng(seed * 1_000_003 + round);
  const idx = nodes.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, k).sort((a, b) => a - b).map((i) => nodes[i]!);
}

/** The round's nodes: those a re-entered round already chose (`keep`), or a fresh seeded sample (preferring warm trainers where that is known). */
export function chooseNodes(candidates: readonly TrainerTarget[], config: { fraction: number; seed: number; availability?: number; minNodes?: number }, round: number, keep?: readonly string[]): TrainerTarget[] {
  if (keep) return candidates.filter((t) => keep.includes(t.nodeId));
  const available = availableNodes(candidates, config.availability ?? 1, config.seed, round);
  const warm = warmthSource()?.warm();
  if (warm) return selectPreferringWarm(available, Math.max(config.minNodes ?? 1, 1, Math.ceil(config.fraction * available.length)), warm, config.seed, round);
  return selectNodes(available, config.fraction, config.seed, round, config.minNodes);
}

/** The round row as it stands, when the round was opened before (a resumed or retried round). */
export interface OpenRound {
  status: 'running' | 'completed' | 'failed';
  baseVersion: number;
  selected: string[];
  deadline: string;
}

export interface RoundPlan {
  round: number;
  baseVersion: number;
  instructions: FitInstruction[];
  deadline: Date;
  /** The configured quorum, capped at the number of chosen nodes. */
  quorum: number;
  /** Accepted updates the round needs: the quorum, and never fewer than the strategy needs to be what it claims. */
  required: number;
}

export interface PlanInput {
  round: number;
  strategy: Pick<Strategy, 'configureFit' | 'minUpdates'>;
  /** Every known trainer. */
  trainers: readonly TrainerTarget[];
  config: { nodes: string[] | null; minQuorum: number; roundTimeoutS: number };
  /** The run's latest global version: the base of a new round. */
  latestVersion: number;
  existing?: OpenRound;
  now: number;
}

/**
 * Plans a round. A round still 'running' (the aggregator was restarted) is re-entered with
 * its base version, its nodes and, while it lasts, its deadline: trainers answer a repeat
 * with the update they already stored. Anything else starts afresh.
 */
export function planRound(p: PlanInput): RoundPlan {
  const reenter = p.existing?.status === 'running' ? p.existing : undefined;
  const candidates = p.config.nodes ? p.trainers.filter((t) => p.config.nodes!.includes(t.nodeId)) : p.trainers;
  const instructions = p.strategy.configureFit(p.round, candidates, reenter?.selected);
  const quorum = Math.min(p.config.minQuorum, Math.max(1, instructions.length));
  const keepDeadline = reenter && Date.parse(reenter.deadline) > p.now;
  return {
    round: p.round,
    baseVersion: reenter ? reenter.baseVersion : p.latestVersion,
    instructions,
    deadline: keepDeadline ? new Date(reenter.deadline) : new Date(p.now + p.config.roundTimeoutS * 1000),
    quorum,
    required: Math.max(quorum, p.strategy.minUpdates),
  };
}

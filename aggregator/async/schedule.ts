/**
 * Which node trains next, as pure functions of the driver's state: a seeded draw among the
 * eligible nodes that are neither training now nor cooling down after a failure. A node
 * that fails is simply resampled later; its cooldown doubles with consecutive failures so
 * a dead node costs few invocations.
 */
import { createRng } from '../../datasets/rng.js';

export interface ScheduleState {
  /** Nodes with an invocation in flight. */
  busy: ReadonlySet<string>;
  /** Node → epoch ms before which it is not asked again. */
  coolingUntil: ReadonlyMap<string, number>;
}

/** The free nodes, in the candidates' order. */
export function freeNodes(candidates: readonly string[], state: ScheduleState, now: number): string[] {
  return candidates.filter((n) => !state.busy.has(n) && (state.coolingUntil.get(n) ?? 0) <= now);
}

/** A seeded draw among the free nodes (the same seed and invocation number draw the same node), or undefined. */
export function pickNode(candidates: readonly string[], state: ScheduleState, now: number, seed: number, invocation: number): string | undefined {
  const free = freeNodes(candidates, state, now);
  if (!free.length) return undefined;
  const rng = createRng(seed * 1_000_003 + invocation);
  return free[Math.floor(rng() * free.length)];
}

/** Wait before asking a node again after its `failures`-th consecutive failure: 1 s, 2 s, 4 s … capped at 30 s. */
export function cooldownMs(failures: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, failures - 1));
}

/** When the earliest cooling node becomes free again (undefined: none is cooling). */
export function nextFreeAt(candidates: readonly string[], state: ScheduleState, now: number): number | undefined {
  const times = candidates.filter((n) => !state.busy.has(n)).map((n) => state.coolingUntil.get(n) ?? 0).filter((t) => t > now);
  return times.length ? Math.min(...times) : undefined;
}

/**
 * Invocations are numbered above every possible aggregation number (the run schema caps
 * rounds at 10 000), so a trainer's closed-round check never mistakes an aggregation's row
 * in the rounds table for the invocation it is asked to train.
 */
export const FIRST_INVOCATION = 10_001;

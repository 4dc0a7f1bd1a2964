/**
 * Nodes that come and go, and a floor on the sample: many edge devices are reachable only
 * some of the time (FedLess, McMahan et al.'s C = 0.1 of the available clients). Each round a
 * seeded `availability` share of the nodes is reachable; the round samples ⌈fraction·available⌉
 * of those, and never fewer than `minNodes` (as many as are available).
 */
import { z } from 'zod';
import { createRng } from '../../datasets/rng.js';

/** RunConfig fields for sampling at scale (merged into RunConfigSchema). */
export const SAMPLING_FIELDS = {
  /** Share of the nodes reachable in a round (seeded per round); 1: every node, always. */
  availability: z.number().min(0.01).max(1).default(1),
  /** The fewest nodes a round samples (when that many are available). */
  minNodes: z.number().int().min(1).max(10_000).default(1),
};

/** The nodes reachable in `round`: each independently with probability `availability`, seeded by (seed, round). */
export function availableNodes<T>(nodes: readonly T[], availability: number, seed: number, round: number): T[] {
  if (availability >= 1) return [...nodes];
  const rng = createRng(seed * 7_368_787 + round * 31 + 17);
  return nodes.filter(() => rng() < availability);
}

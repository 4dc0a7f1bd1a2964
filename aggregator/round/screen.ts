import { CodecError, decodeStoredWeights } from '../../services/core/codec.js';
import type { TensorSpec } from '../../services/core/model.js';
import type { InvokeOutcome } from '../invoke.js';
import { clipToNorm, l2Distance } from './aggregate.js';
import type { NodeRoundResult } from './types.js';

/** A stored update as the screen sees it: its row's claims and its bytes. */
export interface UpdateToScreen {
  nodeId: string;
  sampleCount: number;
  checksum: string;
  bytes: Uint8Array | undefined;
}

export interface ScreenPolicy {
  spec: readonly TensorSpec[];
  maxUpdateNorm: number | null;
  normPolicy: 'clip' | 'reject';
}

export type ScreenVerdict =
  | { accepted: true; weights: Float32Array; norm: number; clipped: boolean }
  | { accepted: false; reason: string; norm?: number };

/**
 * Decides whether an update may count: its bytes are exactly what its checksum names and
 * decode to this model with finite values, its sample count is a positive integer, and its
 * step from the global model is within maxUpdateNorm (clipped to it, or refused).
 */
export function screenUpdate(update: UpdateToScreen, global: Float32Array, policy: ScreenPolicy): ScreenVerdict {
  let weights: Float32Array;
  try {
    if (!update.bytes) throw new Error('update bytes are missing');
    if (!(Number.isSafeInteger(update.sampleCount) && update.sampleCount > 0)) throw new Error(`invalid sample count ${update.sampleCount}`);
    weights = decodeStoredWeights(update.bytes, update.checksum, policy.spec).flat;
  } catch (e) {
    return { accepted: false, reason: e instanceof CodecError ? `${e.code}: ${e.message}` : String(e) };
  }
  const norm = l2Distance(weights, global);
  if (policy.maxUpdateNorm === null || norm <= policy.maxUpdateNorm) return { accepted: true, weights, norm, clipped: false };
  if (policy.normPolicy === 'reject') return { accepted: false, norm, reason: `update norm ${norm.toFixed(2)} exceeds ${policy.maxUpdateNorm}` };
  return { accepted: true, weights: clipToNorm(weights, global, policy.maxUpdateNorm, norm), norm, clipped: true };
}

/** An update row as listed for the round. */
export interface UpdateRow {
  nodeId: string;
  baseVersion: number;
  createdAt: string;
  sampleCount: number;
  durationMs: number;
  metrics: Record<string, any>;
}

/**
 * The round's updates that may count: from a chosen node, on this round's base, stored by
 * the deadline (with a second's grace for the commit). Counted from the store, not from
 * who answered: an update stored just before a lost reply still counts.
 */
export function updatesInTime<U extends UpdateRow>(updates: readonly U[], round: { baseVersion: number; selected: readonly string[]; deadline: Date }): U[] {
  return updates.filter((u) => u.baseVersion === round.baseVersion && round.selected.includes(u.nodeId) && Date.parse(u.createdAt) <= round.deadline.getTime() + 1000);
}

/** Per-node results before screening: delivered (ok), too late, or failed with the trainer's reason. */
export function nodeResults(selected: readonly string[], updates: readonly UpdateRow[], outcomes: ReadonlyMap<string, InvokeOutcome>): NodeRoundResult[] {
  return selected.map((nodeId) => {
    const u = updates.find((x) => x.nodeId === nodeId);
    const o = outcomes.get(nodeId);
    if (u) return { nodeId, status: 'ok', samples: u.sampleCount, loss: u.metrics.loss, accuracy: u.metrics.accuracy, durationMs: u.durationMs, samplesPerSecond: u.metrics.samplesPerSecond, attempts: o?.attempts };
    return { nodeId, status: o && !o.ok && o.reason === 'deadline' ? 'late' : 'failed', reason: o && !o.ok ? o.detail : 'no update stored', attempts: o?.attempts };
  });
}

/** Records a verdict on the node's result (its norm; rejected with the reason; or clipped). */
export function applyVerdict(node: NodeRoundResult, verdict: ScreenVerdict): void {
  if (verdict.norm !== undefined) node.updateNorm = verdict.norm;
  if (!verdict.accepted) Object.assign(node, { status: 'rejected_update', reason: verdict.reason });
  else if (verdict.clipped) node.clipped = true;
}

/** Why a round with `accepted` screened updates cannot be aggregated, or undefined when it can. */
export function shortfall(accepted: number, selected: number, required: number, quorum: number, strategy: { name: string; minUpdates: number }): string | undefined {
  if (accepted >= required) return undefined;
  if (accepted >= quorum && required === strategy.minUpdates) {
    return `only ${accepted} of ${selected} nodes delivered; ${strategy.name} needs at least ${strategy.minUpdates} accepted updates to stay robust`;
  }
  return `only ${accepted} of ${selected} nodes delivered; quorum is ${required}`;
}

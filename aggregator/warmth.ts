/**
 * Warm-aware selection: with trainers that start on demand, asking a node whose process is
 * still running costs a request, asking a cold one costs a process start (seconds on a busy
 * machine). Apodotiko scores clients and prefers warm ones (about 4× fewer cold starts);
 * FedLesScan prefers reliable ones while keeping every node's data represented. Here a round
 * (or the asynchronous driver) prefers warm nodes for part of its places only, and fills the
 * rest by a fair draw, so no node's data drops out of the model.
 *
 * Where warmth is known: `edgefl up` runs the aggregator in the same process as its activator
 * (services/harness/activator.ts) and registers the activator's view here; in a cluster the
 * aggregator registers the Kubernetes API's view (aggregator/kube-warmth.ts: trainers with a
 * ready pod). With static trainer URLs nothing is registered and selection is as before.
 */
import { createRng } from '../datasets/rng.js';

export interface WarmthSource {
  /** Node ids worth asking again in a synchronous round: their trainer process runs now (starting, training or idle) and is no straggler (worthKeeping). */
  warm(): ReadonlySet<string>;
  /**
   * Node ids whose trainer process runs now, stragglers included; absent, warm() stands for it.
   * The asynchronous driver prefers these (warmForAsync): without a round barrier a slow device
   * holds no one up, its late update is weighted down by its staleness, and dropping it from the
   * warm ones only means starting another process in its place.
   */
  running?(): ReadonlySet<string>;
  /** Trainer processes that may run at once (the activator's --max-active); unset where each node scales on its own (Knative). */
  capacity?: number;
}

let registered: WarmthSource | undefined;

/** Registers (or, with undefined, clears) this process's view of which trainers are warm. */
export function setWarmthSource(source: WarmthSource | undefined): void {
  registered = source;
}

export function warmthSource(): WarmthSource | undefined {
  return registered;
}

/**
 * The registered view of warm nodes as the asynchronous driver uses it: every running trainer,
 * slow devices included. In a 100-node FedBuff run with the straggler profile, keeping the 4×
 * slower devices for their run cut cold starts per useful update from 0.38 to 0.25, and CPU
 * seconds per useful update from 1.13 to 1.03 (the two measured back to back).
 */
export function warmForAsync(source: WarmthSource): ReadonlySet<string> {
  return source.running?.() ?? source.warm();
}

/** A round keeps at least this share of its places for a fair draw among the nodes not warm. */
export const FRESH_SHARE = 1 / 3;

/**
 * A round's sample of `k` nodes: warm nodes (a seeded draw among them) take at most
 * k − ⌈k·FRESH_SHARE⌉ places; the others are a seeded uniform draw among the rest, so every
 * node keeps a chance of at least ⌈k/3⌉/n per round to bring its data in. Returned warm
 * first (warmFirst), otherwise in the nodes' own order.
 */
export function selectPreferringWarm<T extends { nodeId: string }>(nodes: readonly T[], k: number, warm: ReadonlySet<string>, seed: number, round: number): T[] {
  if (k >= nodes.length) return [...nodes];
  const rng = createRng(seed * 1_000_003 + round);
  const draw = new Map(nodes.map((n) => [n.nodeId, rng()]));
  const byDraw = (a: T, b: T) => draw.get(a.nodeId)! - draw.get(b.nodeId)!;
  const warmPlaces = k - Math.ceil(k * FRESH_SHARE);
  const chosen = new Set(nodes.filter((n) => warm.has(n.nodeId)).sort(byDraw).slice(0, warmPlaces));
  for (const n of nodes.filter((x) => !chosen.has(x)).sort(byDraw)) {
    if (chosen.size >= k) break;
    chosen.add(n);
  }
  return warmFirst(nodes.filter((n) => chosen.has(n)), warm);
}

/**
 * The round's nodes with the warm ones first (a stable sort), so their requests reach the
 * activator first: a cold node's request that came first would evict an idle process to make
 * room, perhaps the very warm node asked in the same round.
 */
export function warmFirst<T extends { nodeId: string }>(nodes: readonly T[], warm: ReadonlySet<string> | undefined): T[] {
  return warm ? [...nodes].sort((a, b) => Number(!warm.has(a.nodeId)) - Number(!warm.has(b.nodeId))) : [...nodes];
}

/** How many invocations in a row a warm node may be given before it makes room for another. */
export const MAX_WARM_RUN = 5;

/** A running trainer as the activator reports it: invocations its process answered, the last one's duration. */
export interface WarmSlot {
  nodeId: string;
  served: number;
  lastMs?: number;
}

/** A warm node whose last invocation took more than this × the median of the warm ones is not kept for it. */
export const STRAGGLER_FACTOR = 1.5;

/**
 * A process's first invocation runs while V8 is still optimising the training code: 5 epochs on
 * 80 digits took 0.72–0.80 CPU-s in a fresh process against 0.48–0.53 s once warm, 1.4–1.6×.
 * Judged like the others, a node that had just started looked like a straggler about as often as
 * not, was dropped, and its place went to another cold start (a third of the nodes of a 100-node
 * FedBuff run were started once per invocation). Its time is divided by this before it is judged.
 */
export const FIRST_INVOCATION_ALLOWANCE = 1.6;

/** An invocation's time as a warm process would have taken it. */
function warmEquivalentMs(s: WarmSlot): number | undefined {
  return s.lastMs === undefined ? undefined : s.served <= 1 ? s.lastMs / FIRST_INVOCATION_ALLOWANCE : s.lastMs;
}

/**
 * The warm nodes worth preferring. Not one that has answered MAX_WARM_RUN invocations already
 * (others get their turn, and no node's data dominates). Not a straggler either (its last
 * invocation took over 1.5× the median of the warm ones, FedLesScan's rule, a first invocation
 * with FIRST_INVOCATION_ALLOWANCE): the last nodes of a round to finish are the ones still warm,
 * and without this the slowest devices would be asked again and again, and every synchronous
 * round would wait for them.
 */
export function worthKeeping(slots: readonly WarmSlot[]): Set<string> {
  const times = slots.flatMap((s) => warmEquivalentMs(s) ?? []).sort((a, b) => a - b);
  const median = times.length ? times[Math.floor((times.length - 1) / 2)]! : 0;
  return new Set(
    slots
      .filter((s) => {
        const ms = warmEquivalentMs(s);
        return s.served < MAX_WARM_RUN && (ms === undefined || ms <= STRAGGLER_FACTOR * median);
      })
      .map((s) => s.nodeId),
  );
}

export interface WarmPickState {
  /** Node → the invocation number it was last asked for (absent: never). */
  lastInvoked: ReadonlyMap<string, number>;
  /** Node → invocations in a row while it stayed warm. */
  warmRun: ReadonlyMap<string, number>;
}

/**
 * The asynchronous driver's next node among the free ones: a warm node that has not yet had
 * MAX_WARM_RUN invocations in a row (it is re-invoked while its process runs), else the free
 * node asked least recently (never asked first: every node's data comes in, round-robin),
 * ties broken by a seeded draw.
 */
export function pickPreferringWarm(free: readonly string[], warm: ReadonlySet<string>, s: WarmPickState, seed: number, invocation: number): string | undefined {
  if (!free.length) return undefined;
  const rng = createRng(seed * 1_000_003 + invocation);
  const draw = new Map(free.map((n) => [n, rng()]));
  const staying = free.filter((n) => warm.has(n) && (s.warmRun.get(n) ?? 0) < MAX_WARM_RUN);
  if (staying.length) return staying.sort((a, b) => draw.get(a)! - draw.get(b)!)[0];
  const rest = free.filter((n) => !warm.has(n) || (s.warmRun.get(n) ?? 0) < MAX_WARM_RUN);
  const pool = rest.length ? rest : free;
  return [...pool].sort((a, b) => (s.lastInvoked.get(a) ?? 0) - (s.lastInvoked.get(b) ?? 0) || draw.get(a)! - draw.get(b)!)[0];
}

/** The run length after asking `node`: one more if it was warm, else a fresh start at 1. */
export function nextWarmRun(s: WarmPickState, node: string, warm: ReadonlySet<string>): number {
  return warm.has(node) ? (s.warmRun.get(node) ?? 0) + 1 : 1;
}

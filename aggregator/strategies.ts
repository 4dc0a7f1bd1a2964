/**
 * Aggregation strategies on flat weight vectors. FedAvg-family strategies stream: each
 * update is folded into one running sum and can be dropped at once, so memory stays at
 * two model-sized vectors whatever the number of nodes. The robust statistics (median,
 * trimmed mean) need every update of the round at once by definition.
 */
export type StrategyName = 'fedavg' | 'fedprox' | 'fedavgm' | 'median' | 'trimmed-mean';
export const STRATEGIES: readonly StrategyName[] = ['fedavg', 'fedprox', 'fedavgm', 'median', 'trimmed-mean'];

export interface StrategyParams {
  /** FedProx proximal weight sent to trainers. */
  proximalMu?: number;
  /** FedAvgM server momentum (beta) and server learning rate. */
  serverMomentum?: number;
  serverLearningRate?: number;
  /** Trimmed mean: share of values cut at each end per coordinate. */
  trimFraction?: number;
}

export interface RoundAggregator {
  add(update: Float32Array, samples: number): void;
  /** The new global weights; throws when nothing was added. */
  result(): Float32Array;
}

export interface Strategy {
  readonly name: StrategyName;
  /** Extra fields for the trainers' round request (FedProx's mu). */
  trainerParams(): { proximalMu: number };
  begin(global: Float32Array): RoundAggregator;
  /** Server-side state to persist after a round (FedAvgM's momentum); undefined for stateless strategies. */
  saveState?(): Buffer | undefined;
  /** Restores what saveState returned, when a run resumes in a new process. */
  loadState?(state: Buffer): void;
}

export function createStrategy(name: StrategyName, params: StrategyParams = {}): Strategy {
  switch (name) {
    case 'fedavg':
      return { name, trainerParams: () => ({ proximalMu: 0 }), begin: () => weightedMean() };
    case 'fedprox':
      return { name, trainerParams: () => ({ proximalMu: params.proximalMu ?? 0.01 }), begin: () => weightedMean() };
    case 'fedavgm':
      return fedAvgM(params.serverMomentum ?? 0.9, params.serverLearningRate ?? 1);
    case 'median':
      return { name, trainerParams: () => ({ proximalMu: 0 }), begin: () => coordinateWise((vals) => median(vals)) };
    case 'trimmed-mean': {
      const trim = params.trimFraction ?? 0.2;
      if (!(trim >= 0 && trim < 0.5)) throw new Error('trimFraction must be in [0, 0.5)');
      return { name, trainerParams: () => ({ proximalMu: 0 }), begin: () => coordinateWise((vals) => trimmedMean(vals, trim)) };
    }
    default:
      throw new Error(`unknown strategy '${String(name)}'; expected one of ${STRATEGIES.join(', ')}`);
  }
}

/** Σ n_k·w_k / Σ n_k, accumulated in float64 so the order of arrival does not change the result. */
export function weightedMean(): RoundAggregator {
  let sum: Float64Array | undefined;
  let total = 0;
  return {
    add(update, samples) {
      if (!(samples > 0)) throw new Error('an update needs a positive sample count');
      sum ??= new Float64Array(update.length);
      if (update.length !== sum.length) throw new Error(`update has ${update.length} weights, expected ${sum.length}`);
      for (let i = 0; i < update.length; i++) sum[i]! += update[i]! * samples;
      total += samples;
    },
    result() {
      if (!sum || total === 0) throw new Error('no updates to aggregate');
      const out = new Float32Array(sum.length);
      for (let i = 0; i < sum.length; i++) out[i] = sum[i]! / total;
      return out;
    },
  };
}

/**
 * FedAvgM (Hsu et al., 2019): the averaged change is treated as a pseudo-gradient
 * g = w_global − avg, with server momentum v ← βv + g and w ← w_global − η·v.
 * The momentum buffer lives as long as the strategy (one run).
 */
function fedAvgM(beta: number, lr: number): Strategy {
  let velocity: Float32Array | undefined;
  return {
    name: 'fedavgm',
    trainerParams: () => ({ proximalMu: 0 }),
    saveState: () => (velocity ? Buffer.from(velocity.buffer, velocity.byteOffset, velocity.byteLength) : undefined),
    loadState(state) {
      if (state.byteLength % 4 !== 0) throw new Error('FedAvgM state is not a float32 vector');
      // Copy: the Buffer may share a pooled ArrayBuffer at an unaligned offset.
      velocity = new Float32Array(Uint8Array.from(state).buffer);
    },
    begin(global) {
      const inner = weightedMean();
      return {
        add: (u, n) => inner.add(u, n),
        result() {
          const avg = inner.result();
          velocity ??= new Float32Array(global.length);
          const out = new Float32Array(global.length);
          for (let i = 0; i < global.length; i++) {
            const v = beta * velocity[i]! + (global[i]! - avg[i]!);
            velocity[i] = v;
            out[i] = global[i]! - lr * v;
          }
          return out;
        },
      };
    },
  };
}

function coordinateWise(reduce: (values: Float64Array) => number): RoundAggregator {
  const updates: Float32Array[] = [];
  return {
    add(update) {
      if (updates.length && update.length !== updates[0]!.length) throw new Error(`update has ${update.length} weights, expected ${updates[0]!.length}`);
      updates.push(update);
    },
    result() {
      if (!updates.length) throw new Error('no updates to aggregate');
      const out = new Float32Array(updates[0]!.length);
      const column = new Float64Array(updates.length);
      for (let i = 0; i < out.length; i++) {
        for (let k = 0; k < updates.length; k++) column[k] = updates[k]![i]!;
        out[i] = reduce(column);
      }
      return out;
    },
  };
}

export function median(values: Float64Array): number {
  const s = Float64Array.from(values).sort();
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Drops ⌊trim·n⌋ values at each end, then averages; with 3 nodes and trim ≥ 1/3 that is the median. */
export function trimmedMean(values: Float64Array, trim: number): number {
  const s = Float64Array.from(values).sort();
  let cut = Math.floor(trim * s.length);
  if (s.length - 2 * cut <= 0) cut = (s.length - 1) >> 1;
  let sum = 0;
  for (let i = cut; i < s.length - cut; i++) sum += s[i]!;
  return sum / (s.length - 2 * cut);
}

/** ‖update − global‖₂, the size of a node's step. */
export function l2Distance(update: Float32Array, global: Float32Array): number {
  let s = 0;
  for (let i = 0; i < update.length; i++) {
    const d = update[i]! - global[i]!;
    s += d * d;
  }
  return Math.sqrt(s);
}

/** Scales the step down to `bound` (norm clipping, as in DP-FedAvg and robust FL). */
export function clipToNorm(update: Float32Array, global: Float32Array, bound: number, norm = l2Distance(update, global)): Float32Array {
  if (norm <= bound) return update;
  const scale = bound / norm;
  const out = new Float32Array(update.length);
  for (let i = 0; i < update.length; i++) out[i] = global[i]! + (update[i]! - global[i]!) * scale;
  return out;
}

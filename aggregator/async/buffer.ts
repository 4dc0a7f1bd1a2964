/**
 * FedBuff's server side, as pure arithmetic (Nguyen et al. 2022, Algorithm 1): each update
 * is a delta from the global version its node trained from (its own base, not the current
 * one), down-weighted by how many aggregations that base is behind; K of them make one step.
 */

/** s(τ) = (1+τ)^-a: the paper's 1/√(1+τ) for a = 0.5; a = 0 treats stale updates as fresh. */
export function stalenessWeight(staleness: number, exponent: number): number {
  if (!(Number.isInteger(staleness) && staleness >= 0)) throw new Error(`staleness must be a non-negative integer, got ${staleness}`);
  return (1 + staleness) ** -exponent;
}

/** Aggregations published since the update's base: how stale it arrives. */
export function stalenessOf(baseAggregation: number, aggregationsNow: number): number {
  return Math.max(0, aggregationsNow - baseAggregation);
}

export interface StaleUpdate {
  weights: Float32Array;
  /** The global weights the node trained from. */
  base: Float32Array;
  samples: number;
  staleness: number;
}

export interface UpdateBuffer {
  add(update: StaleUpdate): void;
  readonly size: number;
  readonly staleness: readonly number[];
  /** global + η · Σ (n_i/N)·s(τ_i)·(w_i − base_i); throws when empty. */
  apply(global: Float32Array, serverLearningRate: number): Float32Array;
}

/**
 * The buffer folds each delta into one float64 sum as it arrives, so it holds one model-sized
 * vector whatever K is. With every τ = 0 and η = 1 the step is exactly FedAvg's weighted mean.
 */
export function createUpdateBuffer(length: number, weight: (staleness: number) => number): UpdateBuffer {
  const sum = new Float64Array(length);
  const seen: number[] = [];
  let samples = 0;
  return {
    add(u) {
      if (!(u.samples > 0)) throw new Error('an update needs a positive sample count');
      if (u.weights.length !== length || u.base.length !== length) throw new Error(`update has ${u.weights.length} weights (base ${u.base.length}), expected ${length}`);
      const w = weight(u.staleness) * u.samples;
      for (let i = 0; i < length; i++) sum[i]! += w * (u.weights[i]! - u.base[i]!);
      samples += u.samples;
      seen.push(u.staleness);
    },
    get size() {
      return seen.length;
    },
    get staleness() {
      return seen;
    },
    apply(global, lr) {
      if (samples === 0) throw new Error('no updates to aggregate');
      if (global.length !== length) throw new Error(`global has ${global.length} weights, expected ${length}`);
      const out = new Float32Array(length);
      for (let i = 0; i < length; i++) out[i] = global[i]! + (lr * sum[i]!) / samples;
      return out;
    },
  };
}

/** The arithmetic of aggregation on flat weight vectors, shared by the strategies. */

export interface RoundAggregator {
  add(update: Float32Array, samples: number): void;
  /** The aggregate; throws when nothing was added. */
  result(): Float32Array;
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

/** Keeps every update, then reduces each coordinate's column of values (sample counts are ignored). */
export function coordinateWise(reduce: (values: Float64Array) => number): { add(update: Float32Array): void; result(): Float32Array } {
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

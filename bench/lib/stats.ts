/** Small numeric helpers shared by the benchmarks. */

export interface Spread {
  n: number;
  min: number;
  median: number;
  p90: number;
  max: number;
}

export interface Percentiles {
  n: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  if (p <= 0) return sorted[0]!;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function spread(values: readonly number[], digits = 1): Spread {
  return {
    n: values.length,
    min: round(Math.min(...values), digits),
    median: round(median(values), digits),
    p90: round(percentile(values, 90), digits),
    max: round(Math.max(...values), digits),
  };
}

export function latencyPercentiles(values: readonly number[], digits = 3): Percentiles {
  return {
    n: values.length,
    p50_ms: round(percentile(values, 50), digits),
    p90_ms: round(percentile(values, 90), digits),
    p99_ms: round(percentile(values, 99), digits),
    mean_ms: round(mean(values), digits),
    max_ms: round(values.length ? Math.max(...values) : NaN, digits),
  };
}

/** served / ceiling, rounded; null when either side is missing. */
export function ratio(served: number | null | undefined, ceiling: number | null | undefined, digits = 3): number | null {
  if (served == null || ceiling == null || !Number.isFinite(served) || !Number.isFinite(ceiling) || ceiling <= 0) return null;
  return round(served / ceiling, digits);
}

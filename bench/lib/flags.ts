/** Flag types and validation shared by the benchmark modules (parsing is node:util parseArgs in run.ts). */
import type { ParseArgsConfig } from 'node:util';
import type { BenchOutput } from './output.js';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

export class BenchUsageError extends Error {}

export interface BenchContext {
  outDir: string;
  /** Progress to stderr (stdout is for the report or the JSON line). */
  log(msg: string): void;
}

export interface BenchModule<P extends Record<string, unknown> = Record<string, unknown>> {
  description: string;
  options: Options;
  /** Validates flags into parameters (defaults filled in); throws BenchUsageError. */
  params(values: Values): P;
  run(params: P, ctx: BenchContext): Promise<BenchOutput>;
}

export function intFlag(v: Values, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = v[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new BenchUsageError(`--${name} must be an integer from ${min} to ${max}; got '${String(raw)}'`);
  return n;
}

export function numFlag(v: Values, name: string, fallback: number, min = 0, exclusiveMin = false): number {
  const raw = v[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(n) || n < min || (exclusiveMin && n === min)) throw new BenchUsageError(`--${name} must be a number ${exclusiveMin ? '>' : '>='} ${min}; got '${String(raw)}'`);
  return n;
}

export function intListFlag(v: Values, name: string, fallback: number[], min = 1, max = Number.MAX_SAFE_INTEGER): number[] {
  const raw = v[name];
  if (raw === undefined) return fallback;
  const items = String(raw).split(',').map((s) => s.trim()).filter(Boolean);
  const out = items.map((s) => (/^\d+$/.test(s) ? Number(s) : NaN));
  if (out.length === 0 || out.some((n) => !Number.isSafeInteger(n) || n < min || n > max)) {
    throw new BenchUsageError(`--${name} must be a comma-separated list of integers from ${min} to ${max}; got '${String(raw)}'`);
  }
  return [...new Set(out)];
}

export function strFlag(v: Values, name: string): string | undefined {
  const raw = v[name];
  return typeof raw === 'string' && raw !== '' ? raw : undefined;
}

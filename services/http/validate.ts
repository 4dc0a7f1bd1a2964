import { badRequest } from './errors.js';

/** Field readers for JSON request bodies: each one either returns a well-typed value or throws a 400 naming the field. */
export type Fields = Record<string, unknown>;

export function asObject(value: unknown, what = 'request body'): Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('invalid_body', `${what} must be a JSON object`);
  return value as Fields;
}

interface NumberRule {
  min?: number;
  max?: number;
  default?: number;
}

function missing(name: string): never {
  throw badRequest('missing_field', `'${name}' is required`);
}

export function intField(o: Fields, name: string, rule: NumberRule = {}): number {
  const v = o[name];
  if (v === undefined || v === null) return rule.default ?? missing(name);
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badRequest('invalid_field', `'${name}' must be an integer`);
  return checkRange(name, v, rule);
}

export function numberField(o: Fields, name: string, rule: NumberRule = {}): number {
  const v = o[name];
  if (v === undefined || v === null) return rule.default ?? missing(name);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest('invalid_field', `'${name}' must be a finite number`);
  return checkRange(name, v, rule);
}

function checkRange(name: string, v: number, rule: NumberRule): number {
  if (rule.min !== undefined && v < rule.min) throw badRequest('invalid_field', `'${name}' must be >= ${rule.min}`);
  if (rule.max !== undefined && v > rule.max) throw badRequest('invalid_field', `'${name}' must be <= ${rule.max}`);
  return v;
}

export function stringField(o: Fields, name: string, opts: { default?: string; pattern?: RegExp; maxLength?: number } = {}): string {
  const v = o[name];
  if (v === undefined || v === null) return opts.default ?? missing(name);
  if (typeof v !== 'string' || v.length === 0) throw badRequest('invalid_field', `'${name}' must be a non-empty string`);
  if (v.length > (opts.maxLength ?? 200)) throw badRequest('invalid_field', `'${name}' is too long`);
  if (opts.pattern && !opts.pattern.test(v)) throw badRequest('invalid_field', `'${name}' has an invalid format`);
  return v;
}

export function enumField<T extends string>(o: Fields, name: string, allowed: readonly T[], fallback?: T): T {
  const v = o[name];
  if (v === undefined || v === null) return fallback ?? missing(name);
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw badRequest('invalid_field', `'${name}' must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** Accepts an ISO-8601 string or epoch milliseconds. */
export function timeField(o: Fields, name: string, fallback?: Date): Date {
  const v = o[name];
  if (v === undefined || v === null) return fallback ?? missing(name);
  const d = typeof v === 'number' ? new Date(v) : typeof v === 'string' ? new Date(v) : new Date(NaN);
  if (Number.isNaN(d.getTime())) throw badRequest('invalid_field', `'${name}' must be an ISO-8601 time or epoch milliseconds`);
  return d;
}

export function stringListField(o: Fields, name: string, fallback?: string[]): string[] {
  const v = o[name];
  if (v === undefined || v === null) return fallback ?? missing(name);
  if (!Array.isArray(v) || v.length > 1000 || !v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 2000)) {
    throw badRequest('invalid_field', `'${name}' must be an array of strings`);
  }
  return v as string[];
}

export function boolField(o: Fields, name: string, fallback: boolean): boolean {
  const v = o[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw badRequest('invalid_field', `'${name}' must be true or false`);
  return v;
}

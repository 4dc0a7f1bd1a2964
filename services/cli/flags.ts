/**
 * Command-line flags as zod schemas: one definition per flag gives its parsing
 * (node:util parseArgs), its validation, its TypeScript type and its `--help` line. Every
 * `edgefl` subcommand and every benchmark declares its flags here.
 *
 * A flag's schema receives the raw value: a string, `true` for a switch, or undefined when
 * the flag is absent (the schema's default or `.optional()` decides what that means).
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';

/** Bad flags or arguments: the CLI and the bench print the one-line message and exit 2. */
export class UsageError extends Error {}

/** A command that could not do its work for a reason the user can act on (exit 1, one line, no stack). */
export class CommandError extends Error {}

export interface Flag<S extends z.ZodType = z.ZodType> {
  schema: S;
  help: string;
  /** Placeholder shown in --help (N, URL, ...); a flag without one is a switch. */
  arg?: string;
  /** The default as --help shows it. */
  shows?: string;
  short?: string;
  /** The environment variable this flag sets (service flags). */
  env?: string;
  /** The key a benchmark's parameters use for it (default: the name in snake_case). */
  key?: string;
}

export type Flags = Record<string, Flag>;
export type FlagValues<F extends Flags> = { [K in keyof F]: z.output<F[K]['schema']> };

interface Range {
  min?: number;
  max?: number;
}

function rangeText(what: string, { min, max }: Range): string {
  if (min !== undefined && max !== undefined) return `${what} from ${min} to ${max}`;
  if (min !== undefined) return `${what} >= ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

/** Raw string → integer within the range; every failure says the same thing. */
function intSchema(range: Range, error = `must be ${rangeText('an integer', range)}`) {
  return z
    .string({ error })
    .trim()
    .regex(/^-?\d+$/, { error })
    .transform(Number)
    .pipe(z.number().int({ error }).min(range.min ?? Number.MIN_SAFE_INTEGER, { error }).max(range.max ?? Number.MAX_SAFE_INTEGER, { error }));
}

function numberSchema(range: Range & { above?: number }) {
  const what = range.above !== undefined ? `a number > ${range.above}${range.max !== undefined ? ` and <= ${range.max}` : ''}` : rangeText('a number', range);
  const error = `must be ${what}`;
  let n = z.number({ error }).min(range.min ?? -Infinity, { error }).max(range.max ?? Infinity, { error });
  if (range.above !== undefined) n = n.gt(range.above, { error });
  return z
    .string({ error })
    .trim()
    .min(1, { error })
    .transform(Number)
    .pipe(n.refine(Number.isFinite, { error }));
}

/** A flag whose value is T (a schema with a default) or T | undefined (an optional one). */
type Typed<T> = Flag<z.ZodType<T, unknown>>;

function finish<T>(schema: z.ZodType<T, unknown>, help: string, arg: string, dflt: T | undefined, shows = dflt?.toString()): Flag<z.ZodType<T, unknown>> {
  return { schema: dflt === undefined ? schema.optional() : schema.optional().transform((v) => v ?? dflt), help, arg, shows } as Typed<T>;
}

/** `--name N`: an integer. */
export function int(help: string, o: Range & { default: number; arg?: string }): Typed<number>;
export function int(help: string, o?: Range & { arg?: string }): Typed<number | undefined>;
export function int(help: string, o: Range & { default?: number; arg?: string } = {}) {
  return finish(intSchema(o), help, o.arg ?? 'N', o.default);
}

/** `--name X`: a finite number (`above`: exclusive minimum). */
export function num(help: string, o: Range & { above?: number; default: number; arg?: string }): Typed<number>;
export function num(help: string, o?: Range & { above?: number; arg?: string }): Typed<number | undefined>;
export function num(help: string, o: Range & { above?: number; default?: number; arg?: string } = {}) {
  return finish(numberSchema(o), help, o.arg ?? 'X', o.default);
}

/**
 * A flag for a number some other schema defines (a field of RunConfig, say): its range,
 * integer-ness and default come from that schema, so the flag cannot drift from it.
 */
export function fromNumberSchema(schema: z.ZodNumber | z.ZodDefault<z.ZodNumber>, help: string, o?: { arg?: string }): Typed<number>;
/** `optional`: absent stays undefined (e.g. a request the server fills in with the same default). */
export function fromNumberSchema(schema: z.ZodNumber | z.ZodDefault<z.ZodNumber>, help: string, o: { arg?: string; optional: true }): Typed<number | undefined>;
export function fromNumberSchema(schema: z.ZodNumber | z.ZodDefault<z.ZodNumber>, help: string, o: { arg?: string; optional?: boolean } = {}) {
  const inner = schema instanceof z.ZodDefault ? schema.unwrap() : schema;
  const range = { min: finite(inner.minValue), max: finite(inner.maxValue) };
  const dflt = schema instanceof z.ZodDefault && !o.optional ? (schema.def.defaultValue as number) : undefined;
  return finish(inner.isInt ? intSchema(range) : numberSchema(range), help, o.arg ?? (inner.isInt ? 'N' : 'X'), dflt);
}

const finite = (n: number | null) => (n !== null && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER ? n : undefined);

/** `--name 1,10,50`: distinct integers, comma-separated. */
export function intList(help: string, o: Range & { default: number[] }): Typed<number[]> {
  const error = `must be a comma-separated list of ${rangeText('integers', o)}`;
  const list = z
    .string({ error })
    .transform((raw) => raw.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(intSchema(o, error), { error }).min(1, { error }))
    .transform((xs) => [...new Set(xs)]);
  return finish(list, help, 'N,N,...', o.default, o.default.join(','));
}

function orList(values: readonly string[]): string {
  return values.length > 1 ? `${values.slice(0, -1).join(', ')} or ${values.at(-1)}` : String(values[0]);
}

/** `--name VALUE`: one of a fixed set. */
export function oneOf<const T extends readonly string[]>(values: T, help: string, o: { default: T[number]; arg?: string }): Typed<T[number]>;
export function oneOf<const T extends readonly string[]>(values: T, help: string, o?: { arg?: string }): Typed<T[number] | undefined>;
export function oneOf<const T extends readonly string[]>(values: T, help: string, o: { default?: T[number]; arg?: string } = {}) {
  const error = `must be ${orList(values)}`;
  const member = z.string({ error }).refine((v): v is T[number] => values.includes(v), { error }) as unknown as z.ZodType<T[number], unknown>;
  return finish(member, `${values.join(' | ')}${help ? `: ${help}` : ''}`, o.arg ?? 'NAME', o.default);
}

/** `--name VALUE`: a string; an empty one counts as absent. */
export function text(help: string, o: { default: string; arg?: string; env?: string }): Typed<string>;
export function text(help: string, o?: { arg?: string; env?: string }): Typed<string | undefined>;
export function text(help: string, o: { default?: string; arg?: string; env?: string } = {}) {
  const s = z.string().transform((v) => (v === '' ? undefined : v)) as z.ZodType<string, unknown>;
  return { ...finish(s, help, o.arg ?? 'VALUE', o.default), env: o.env };
}

/** `--name URL`: an absolute http(s) URL, without trailing slashes. */
export function httpUrl(help: string): Typed<string | undefined> {
  const url = z
    .string()
    .refine((u) => URL.canParse(u), { error: 'must be an absolute http(s) URL', abort: true })
    .refine((u) => /^https?:$/.test(URL.parse(u)?.protocol ?? ''), { error: 'must be http or https' })
    .transform((u) => u.replace(/\/+$/, ''));
  return finish(url, help, 'URL', undefined);
}

/** `--name NAME`: a Kubernetes object name (a lower-case DNS label). */
export function kubeName(help: string): Typed<string | undefined> {
  const error = 'must be a Kubernetes name (lower-case DNS label)';
  return finish(z.string().max(63, { error }).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error }), help, 'NAME', undefined);
}

/** `--name`: a switch, false unless given. */
export function toggle(help: string, o: { short?: string } = {}): Typed<boolean> {
  return { schema: z.boolean().default(false), help, short: o.short };
}

/** `--help` / `-h`, which every command accepts. */
export const HELP_FLAG = { help: toggle('show this help', { short: 'h' }) };

/** Parses argv against the flags: unknown flags, missing values and every schema failure throw UsageError. */
export function parseFlags<F extends Flags>(flags: F, argv: string[], opts: { positionals?: boolean } = {}): FlagValues<F> & { _: string[] } {
  const options = Object.fromEntries(
    Object.entries(flags).map(([name, f]) => [name, { type: f.arg ? ('string' as const) : ('boolean' as const), ...(f.short ? { short: f.short } : {}) }]),
  );
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: opts.positionals ?? false, strict: true }) as typeof parsed;
  } catch (e) {
    throw new UsageError(firstLine((e as Error).message));
  }
  const out: Record<string, unknown> = { _: parsed.positionals };
  for (const [name, f] of Object.entries(flags)) {
    const raw = parsed.values[name];
    const r = f.schema.safeParse(raw);
    if (!r.success) throw new UsageError(`--${name} ${r.error.issues[0]?.message ?? 'is invalid'}; got '${String(raw)}'`);
    out[name] = r.data;
  }
  return out as FlagValues<F> & { _: string[] };
}

/**
 * node:util's messages carry a second line of advice. Only the one for a value starting
 * with '-' (use --flag=-1) helps here (commands take no positionals); it joins the first.
 */
function firstLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim());
  return lines[0]!.endsWith('ambiguous.') ? lines.join(' ') : lines[0]!;
}

/** The flag table of a --help text, from the same definitions parseFlags uses. */
export function flagHelp(flags: Flags): string {
  const rows = Object.entries(flags).map(([name, f]) => {
    const left = `${f.short ? `-${f.short}, ` : ''}--${name}${f.arg ? ` ${f.arg}` : ''}`;
    const extra = [f.shows !== undefined ? `default ${f.shows}` : '', f.env ? `$${f.env}` : ''].filter(Boolean).join('; ');
    return [left, `${f.help}${extra ? ` (${extra})` : ''}`] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length));
  return rows.map(([l, r]) => `  ${l.padEnd(width)}  ${r}`).join('\n');
}

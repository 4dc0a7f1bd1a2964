/**
 * What a benchmark module is: its flags (zod schemas, services/cli/flags.ts) and its run.
 * Its parameters (result.json's `params`) are the flags' values under snake_case keys,
 * their type inferred from the schemas; `params` adds the checks one flag alone cannot make.
 */
import type { z } from 'zod';
import type { Flag, Flags, FlagValues } from '../../services/cli/flags.js';
import type { BenchOutput } from './output.js';

export { UsageError as BenchUsageError } from '../../services/cli/flags.js';
export { httpUrl, int, intList, kubeName, num, oneOf, text, toggle } from '../../services/cli/flags.js';

export interface BenchContext {
  outDir: string;
  /** Progress to stderr (stdout is for the report or the JSON line). */
  log(msg: string): void;
}

type Snake<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${Snake<B>}` : S;

type Key<F extends Flags, K extends keyof F & string> = F[K] extends { key: infer N extends string } ? N : Snake<K>;
type Out<F extends Flags, K extends keyof F> = z.output<F[K]['schema']>;

/**
 * The parameters a set of flags gives: `--max-train-samples` → max_train_samples, or the
 * flag's own key; a flag without a default is an optional key (paramsOf leaves it out).
 */
export type ParamsOf<F extends Flags> = {
  [K in keyof F & string as undefined extends Out<F, K> ? never : Key<F, K>]: Out<F, K>;
} & {
  [K in keyof F & string as undefined extends Out<F, K> ? Key<F, K> : never]?: Exclude<Out<F, K>, undefined>;
};

/** A flag whose parameter key is not its snake_case name (e.g. --duration → duration_s). */
export function named<const N extends string, T extends Flag>(key: N, flag: T): T & { key: N } {
  return { ...flag, key };
}

/** The parameters from parsed values: only this module's flags, none left undefined. */
export function paramsOf<F extends Flags>(flags: F, values: FlagValues<F>): ParamsOf<F> {
  const out: Record<string, unknown> = {};
  for (const [name, flag] of Object.entries(flags)) {
    const v = values[name];
    if (v !== undefined) out[flag.key ?? name.replaceAll('-', '_')] = v;
  }
  return out as ParamsOf<F>;
}

export interface BenchModule<F extends Flags = Flags, P extends Record<string, unknown> = ParamsOf<F>> {
  description: string;
  flags: F;
  /** Checks across flags and derived values; throws BenchUsageError. Without it the parameters are ParamsOf<F>. */
  params?(p: ParamsOf<F>): P;
  run(params: P, ctx: BenchContext): Promise<BenchOutput>;
}

/** Declares a benchmark module with its flag and parameter types inferred. */
export function benchmark<F extends Flags, P extends Record<string, unknown> = ParamsOf<F>>(module: BenchModule<F, P>): BenchModule<F, P> {
  return module;
}

/** What a benchmark module is: its flags (zod schemas, services/cli/flags.ts), their checks, and its run. */
import type { Flags, FlagValues } from '../../services/cli/flags.js';
import type { BenchOutput } from './output.js';

export { UsageError as BenchUsageError } from '../../services/cli/flags.js';
export { int, intList, num, oneOf, text, toggle } from '../../services/cli/flags.js';

export interface BenchContext {
  outDir: string;
  /** Progress to stderr (stdout is for the report or the JSON line). */
  log(msg: string): void;
}

export interface BenchModule<F extends Flags = Flags, P extends Record<string, unknown> = Record<string, unknown>> {
  description: string;
  flags: F;
  /** Turns the parsed flags into parameters, with the checks one flag alone cannot make; throws BenchUsageError. */
  params(values: FlagValues<F>): P;
  run(params: P, ctx: BenchContext): Promise<BenchOutput>;
}

/** Declares a benchmark module with its flag and parameter types inferred. */
export function benchmark<F extends Flags, P extends Record<string, unknown>>(module: BenchModule<F, P>): BenchModule<F, P> {
  return module;
}

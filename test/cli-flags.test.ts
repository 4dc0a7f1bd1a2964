import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HELP_FLAG, UsageError, flagHelp, fromNumberSchema, int, intList, num, oneOf, parseFlags, text, toggle } from '../services/cli/flags.js';
import { UP_FLAGS } from '../services/cli/up.js';
import { freePort } from '../services/harness/ports.js';
import { distPath, edgeflCli } from '../services/harness/process.js';

const FLAGS = {
  rounds: int('maximum rounds', { min: 1, max: 100, default: 20 }),
  seed: int('seed', { min: 0 }),
  target: num('accuracy', { min: 0, max: 1, default: 0.9 }),
  lr: num('learning rate', { above: 0 }),
  sizes: intList('sizes', { min: 1, max: 10, default: [1, 2] }),
  kind: oneOf(['iid', 'dirichlet'], 'partition', { default: 'iid' }),
  dir: text('a folder', { arg: 'DIR' }),
  wait: toggle('wait'),
  ...HELP_FLAG,
};

describe('flags as zod schemas', () => {
  it('fills in defaults and leaves optional flags undefined', () => {
    expect(parseFlags(FLAGS, [])).toEqual({ _: [], rounds: 20, seed: undefined, target: 0.9, lr: undefined, sizes: [1, 2], kind: 'iid', dir: undefined, wait: false, help: false });
  });

  it('parses given values into their types', () => {
    const v = parseFlags(FLAGS, ['--rounds', '7', '--seed', '0', '--target', '0.5', '--lr', '1e-3', '--sizes', '3, 1,3', '--kind', 'dirichlet', '--dir', 'x', '--wait', '-h']);
    expect(v).toMatchObject({ rounds: 7, seed: 0, target: 0.5, lr: 0.001, sizes: [3, 1], kind: 'dirichlet', dir: 'x', wait: true, help: true });
  });

  it('rejects every bad value with one line naming the flag, the rule and the value', () => {
    const bad: [string[], string][] = [
      [['--rounds', '0'], "--rounds must be an integer from 1 to 100; got '0'"],
      [['--rounds', '2.5'], "--rounds must be an integer from 1 to 100; got '2.5'"],
      [['--rounds', 'x'], "--rounds must be an integer from 1 to 100; got 'x'"],
      [['--seed=-1'], "--seed must be an integer >= 0; got '-1'"],
      [['--seed', '-1'], "Option '--seed' argument is ambiguous. Did you forget to specify the option argument for '--seed'? To specify an option argument starting with a dash use '--seed=-XYZ'."],
      [['--target', '1.5'], "--target must be a number from 0 to 1; got '1.5'"],
      [['--target', ''], "--target must be a number from 0 to 1; got ''"],
      [['--lr', '0'], "--lr must be a number > 0; got '0'"],
      [['--lr', 'Infinity'], "--lr must be a number > 0; got 'Infinity'"],
      [['--sizes', '1,11'], "--sizes must be a comma-separated list of integers from 1 to 10; got '1,11'"],
      [['--kind', 'shards'], "--kind must be iid or dirichlet; got 'shards'"],
      [['--bogus'], "Unknown option '--bogus'"],
      [['--rounds'], "Option '--rounds <value>' argument missing"],
    ];
    for (const [argv, message] of bad) {
      let error: unknown;
      try {
        parseFlags(FLAGS, argv);
      } catch (e) {
        error = e;
      }
      expect(error, argv.join(' ')).toBeInstanceOf(UsageError);
      expect((error as Error).message).toBe(message);
    }
  });

  it('takes range, integer-ness and default from another schema', () => {
    const flags = { rounds: fromNumberSchema(z.number().int().min(1).max(50).default(20), 'rounds'), share: fromNumberSchema(z.number().min(0).max(1), 'share') };
    expect(parseFlags(flags, [])).toMatchObject({ rounds: 20, share: undefined });
    expect(parseFlags(flags, ['--rounds', '50', '--share', '0.25'])).toMatchObject({ rounds: 50, share: 0.25 });
    expect(() => parseFlags(flags, ['--rounds', '51'])).toThrow("--rounds must be an integer from 1 to 50; got '51'");
    expect(() => parseFlags(flags, ['--share', '2'])).toThrow("--share must be a number from 0 to 1; got '2'");
    expect(flagHelp(flags)).toMatch(/--rounds N\s+rounds \(default 20\)/);
  });

  it('generates --help from the same definitions', () => {
    const help = flagHelp(FLAGS);
    expect(help.split('\n')).toHaveLength(Object.keys(FLAGS).length);
    expect(help).toMatch(/--rounds N\s+maximum rounds \(default 20\)/);
    expect(help).toMatch(/--kind NAME\s+iid \| dirichlet: partition \(default iid\)/);
    expect(help).toMatch(/-h, --help\s+show this help/);
  });
});

const built = existsSync(edgeflCli()) && existsSync(distPath('bench', 'run.js'));
const run = (args: string[]) => spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 });

describe.skipIf(!built)('the built commands', () => {
  it('edgefl up --help lists every flag up reads', () => {
    const r = run([edgeflCli(), 'up', '--help']);
    expect(r.status).toBe(0);
    for (const name of Object.keys(UP_FLAGS)) expect(r.stdout).toContain(`--${name}`);
  });

  it('a bad value is one line on stderr and exit code 2, never a stack trace', () => {
    for (const [args, message] of [
      [[edgeflCli(), 'up', '--rounds', '0'], "edgefl: --rounds must be an integer from 1 to 10000; got '0'\n"],
      [[edgeflCli(), 'up', '--buffer-size', '6'], "edgefl: --buffer-size is the fedbuff strategy's K: add --strategy fedbuff\n"],
      [[edgeflCli(), 'train', '--aggregator', 'http://127.0.0.1:1', '--fraction', '2'], "edgefl: --fraction must be a number from 0.01 to 1; got '2'\n"],
      [[distPath('bench', 'run.js'), 'chaos', '--iterations', 'x'], "bench: chaos: --iterations must be an integer from 1 to 1000; got 'x'\n"],
    ] as const) {
      const r = run([...args]);
      expect(r.stderr, args.join(' ')).toBe(message);
      expect(r.status).toBe(2);
    }
  });

  it('an aggregator that does not answer is one line and exit code 1', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const r = run([edgeflCli(), 'status', '--aggregator', url]);
    expect(r.stderr).toBe(`edgefl: cannot reach ${url}: ECONNREFUSED\n`);
    expect(r.status).toBe(1);
  });
});

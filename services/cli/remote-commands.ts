import { setTimeout as sleep } from 'node:timers/promises';
import { ENV } from '../shared/config.js';
import { RunConfigSchema } from '../../aggregator/run-config.js';
import { CommandError, HELP_FLAG, UsageError, flagHelp, fromNumberSchema, oneOf, parseFlags, text, toggle } from './flags.js';

const RUN_FIELDS = RunConfigSchema.shape;

const AGGREGATOR_FLAG = { aggregator: text('the aggregator (default $EDGEFL_AGGREGATOR_URL)', { arg: 'URL' }) };
const TOKEN_FLAG = { token: text(`admin token (default $${ENV.adminToken})`, { arg: 'TOKEN' }) };
/** What every command that calls a running aggregator's admin API takes (edgefl train, edgefl models ...). */
export const ADMIN_FLAGS = { ...AGGREGATOR_FLAG, ...TOKEN_FLAG };

/** Only the flags given are sent: the aggregator fills in the rest of the run's configuration. */
const TRAIN_FLAGS = {
  ...AGGREGATOR_FLAG,
  // Ranges from the RunConfig schema the aggregator parses the request with.
  rounds: fromNumberSchema(RUN_FIELDS.rounds, 'maximum rounds', { optional: true }),
  target: fromNumberSchema(RUN_FIELDS.targetAccuracy, 'stop at this held-out accuracy', { arg: 'ACC', optional: true }),
  epochs: fromNumberSchema(RUN_FIELDS.epochs, 'local epochs per round', { optional: true }),
  strategy: oneOf(RUN_FIELDS.strategy.unwrap().options, 'aggregation strategy'),
  'min-quorum': fromNumberSchema(RUN_FIELDS.minQuorum, 'updates a round needs', { optional: true }),
  fraction: fromNumberSchema(RUN_FIELDS.fraction, 'share of the nodes asked each round', { optional: true }),
  'round-timeout': fromNumberSchema(RUN_FIELDS.roundTimeoutS, 'seconds a round waits for updates', { arg: 'S', optional: true }),
  ...TOKEN_FLAG,
  wait: toggle('follow the run until it ends'),
  ...HELP_FLAG,
};

const STATUS_FLAGS = {
  ...AGGREGATOR_FLAG,
  run: text('the run (default: the newest)', { arg: 'ID' }),
  json: toggle('print JSON instead of a table'),
  kube: toggle('edge nodes in a Knative cluster instead (see edgefl status --kube --help)'),
  ...HELP_FLAG,
};

/** `edgefl train --aggregator URL [...]`: starts a run on a running aggregator. */
export async function trainRemote(argv: string[]): Promise<number> {
  const v = parseFlags(TRAIN_FLAGS, argv);
  if (v.help) {
    console.log(`edgefl train --aggregator URL [flags]: starts a run\n\n${flagHelp(TRAIN_FLAGS)}`);
    return 0;
  }
  const base = aggregatorUrl(v.aggregator);
  const body = {
    rounds: v.rounds,
    targetAccuracy: v.target,
    epochs: v.epochs,
    strategy: v.strategy,
    minQuorum: v['min-quorum'],
    fraction: v.fraction,
    roundTimeoutS: v['round-timeout'],
  };
  const token = v.token ?? process.env[ENV.adminToken];
  const res = await request(`${base}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const out = (await res.json()) as Record<string, any>;
  if (!res.ok) {
    console.error(`aggregator refused: ${res.status} ${out.error?.code}: ${out.error?.message}`);
    return 1;
  }
  console.log(`started ${out.id}; follow it with: edgefl status --aggregator ${base} --run ${out.id}`);
  if (v.wait) return watch(base, out.id);
  return 0;
}

/** `edgefl status --aggregator URL [--run ID]`. */
export async function statusRemote(argv: string[]): Promise<number> {
  const v = parseFlags(STATUS_FLAGS, argv);
  if (v.help) {
    console.log(`edgefl status --aggregator URL [flags]: a run's rounds\n\n${flagHelp(STATUS_FLAGS)}`);
    return 0;
  }
  const base = aggregatorUrl(v.aggregator);
  let id = v.run;
  if (!id) {
    const list = (await (await request(`${base}/runs`)).json()) as { runs: { id: string }[] };
    if (!list.runs.length) {
      console.log('no runs yet');
      return 0;
    }
    id = list.runs[0]!.id;
  }
  const res = await request(`${base}/runs/${encodeURIComponent(id)}`);
  const run = (await res.json()) as Record<string, any>;
  if (!res.ok) {
    console.error(`${res.status}: ${run.error?.message}`);
    return 1;
  }
  if (v.json) console.log(JSON.stringify(run, null, 2));
  else printRun(run);
  return 0;
}

async function watch(base: string, id: string): Promise<number> {
  for (;;) {
    const run = (await (await request(`${base}/runs/${id}`)).json()) as Record<string, any>;
    if (run.status !== 'running') {
      printRun(run);
      return run.status === 'failed' ? 1 : 0;
    }
    await sleep(2000);
  }
}

export function printRun(run: Record<string, any>): void {
  console.log(`run ${run.id}: ${run.status}${run.stopReason ? ` (${run.stopReason})` : ''}; best accuracy ${pct(run.bestAccuracy)}; latest model v${run.latestVersion}`);
  // accuracy: the validation digits (they decide target, patience, promotion); test: digits no decision looked at.
  console.log('round  status     version  accuracy   loss    test acc.  participants  duration  promoted');
  for (const r of run.rounds ?? []) {
    console.log(
      `${String(r.round).padStart(5)}  ${String(r.status).padEnd(9)}  ${String(r.modelVersion ?? '-').padStart(7)}  ${pct(r.globalAccuracy).padStart(8)}  ${r.globalLoss === undefined ? '   -  ' : Number(r.globalLoss).toFixed(4)}  ${pct(r.testAccuracy).padStart(9)}  ${String((r.participants ?? []).length).padStart(12)}  ${(r.durationMs ? (r.durationMs / 1000).toFixed(1) + ' s' : '-').padStart(8)}  ${r.promoted === undefined ? '-' : r.promoted ? 'yes' : 'no'}`,
    );
  }
}

const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(2)}%` : '-');

/** fetch, with an unreachable aggregator as one line (exit 1) instead of fetch's bare 'fetch failed' stack. */
export async function request(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CommandError(`cannot reach ${new URL(url).origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
}

export function aggregatorUrl(flag: string | undefined): string {
  const url = flag ?? process.env.EDGEFL_AGGREGATOR_URL;
  if (!url) throw new UsageError('--aggregator URL is required (or set EDGEFL_AGGREGATOR_URL)');
  return url.replace(/\/$/, '');
}

import { ENV } from '../shared/config.js';
import { UsageError, num, parse } from './args.js';

/** `edgefl train --aggregator URL [...]`: starts a run on a running aggregator. */
export async function trainRemote(argv: string[]): Promise<number> {
  const v = parse(argv, {
    aggregator: { type: 'string' },
    rounds: { type: 'string' },
    target: { type: 'string' },
    epochs: { type: 'string' },
    strategy: { type: 'string' },
    'min-quorum': { type: 'string' },
    fraction: { type: 'string' },
    'round-timeout': { type: 'string' },
    token: { type: 'string' },
    wait: { type: 'boolean' },
  });
  const base = aggregatorUrl(v.aggregator);
  const body: Record<string, unknown> = {};
  if (v.rounds !== undefined) body.rounds = num(v, 'rounds', 20);
  if (v.target !== undefined) body.targetAccuracy = num(v, 'target', 0.98);
  if (v.epochs !== undefined) body.epochs = num(v, 'epochs', 1);
  if (v.strategy !== undefined) body.strategy = v.strategy;
  if (v['min-quorum'] !== undefined) body.minQuorum = num(v, 'min-quorum', 1);
  if (v.fraction !== undefined) body.fraction = num(v, 'fraction', 1);
  if (v['round-timeout'] !== undefined) body.roundTimeoutS = num(v, 'round-timeout', 300);
  const token = (v.token as string | undefined) ?? process.env[ENV.adminToken];
  const res = await fetch(`${base}/runs`, {
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
  const v = parse(argv, { aggregator: { type: 'string' }, run: { type: 'string' }, json: { type: 'boolean' }, kube: { type: 'boolean' } });
  const base = aggregatorUrl(v.aggregator);
  let id = v.run as string | undefined;
  if (!id) {
    const list = (await (await fetch(`${base}/runs`)).json()) as { runs: { id: string }[] };
    if (!list.runs.length) {
      console.log('no runs yet');
      return 0;
    }
    id = list.runs[0]!.id;
  }
  const res = await fetch(`${base}/runs/${encodeURIComponent(id)}`);
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
    const run = (await (await fetch(`${base}/runs/${id}`)).json()) as Record<string, any>;
    if (run.status !== 'running') {
      printRun(run);
      return run.status === 'failed' ? 1 : 0;
    }
    await new Promise((r) => setTimeout(r, 2000));
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

export function aggregatorUrl(v: unknown): string {
  const url = (v as string | undefined) ?? process.env.EDGEFL_AGGREGATOR_URL;
  if (!url) throw new UsageError('--aggregator URL is required (or set EDGEFL_AGGREGATOR_URL)');
  return url.replace(/\/$/, '');
}

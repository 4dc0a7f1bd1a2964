import { ENV } from '../shared/config.js';
import { HELP_FLAG, UsageError, flagHelp, int, parseFlags, text, toggle, type Flags } from './flags.js';
import { ADMIN_FLAGS, aggregatorUrl, request as fetchAggregator } from './remote-commands.js';

export const MODELS_USAGE = `usage: edgefl models list|promoted|promote V [--nodes node-1,...]|rollback [--nodes ...]|prune [--dry-run] --aggregator URL [--token T]`;

const COMMON = { ...ADMIN_FLAGS, json: toggle('print JSON instead of text'), ...HELP_FLAG };
const SCOPE = {
  ...COMMON,
  nodes: text('comma-separated edge nodes: a canary (default: the whole fleet)', { arg: 'LIST' }),
  reason: text('why (recorded in the promotion history)', { arg: 'TEXT' }),
};
const PRUNE = {
  ...COMMON,
  'dry-run': toggle('only show what would be pruned'),
  'keep-candidates': int('keep the newest N versions whatever they are (default 10)', { min: 1 }),
  'keep-rollback-targets': int('keep the last N promoted versions loadable (default 5)', { min: 0 }),
  'keep-updates': toggle("keep the trainers' updates of finished rounds"),
};

/** `edgefl models ...`: the model lifecycle on a running aggregator (promote, rollback and prune need the admin token). */
export async function modelsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list':
      return list(rest);
    case 'promoted':
      return promoted(rest);
    case 'promote':
      return promoteCommand(rest);
    case 'rollback':
      return rollback(rest);
    case 'prune':
      return prune(rest);
    default:
      throw new UsageError(MODELS_USAGE);
  }
}

interface Call {
  base: string;
  token?: string;
  json: boolean;
}

/** Parses the flags; undefined when --help was asked for (and printed). */
function call<F extends Flags>(flags: F, argv: string[], what: string): (Call & { v: ReturnType<typeof parseFlags<F>> }) | undefined {
  const v = parseFlags(flags, argv, { positionals: true });
  if (v.help) {
    console.log(`edgefl models ${what}\n\n${flagHelp(flags)}`);
    return undefined;
  }
  const token = (v.token as string | undefined) ?? process.env[ENV.adminToken];
  return { base: aggregatorUrl(v.aggregator as string | undefined), token: token || undefined, json: Boolean(v.json), v };
}

async function request(c: Call, method: string, route: string, body?: unknown): Promise<Record<string, any> | undefined> {
  const res = await fetchAggregator(c.base + route, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(c.token ? { authorization: `Bearer ${c.token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const out = (await res.json()) as Record<string, any>;
  if (res.ok) return out;
  console.error(`aggregator refused: ${res.status} ${out.error?.code}: ${out.error?.message}`);
  return undefined;
}

const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(2)}%` : '-');
const nodesFlag = (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);

/** A read-only command: GET `route` and print what came back, as JSON with --json. */
async function show(argv: string[], what: string, route: string, print: (out: Record<string, any>) => void): Promise<number> {
  const c = call(COMMON, argv, what);
  if (!c) return 0;
  const out = await request(c, 'GET', route);
  if (!out) return 1;
  if (c.json) console.log(JSON.stringify(out, null, 2));
  else print(out);
  return 0;
}

async function list(argv: string[]): Promise<number> {
  return show(argv, 'list --aggregator URL: every version and its status', '/models', (out) => {
    console.log('version  status     run                          round  accuracy  size');
    for (const m of out.models as Record<string, any>[]) {
      const acc = m.metrics?.validationAccuracy ?? m.metrics?.accuracy;
      const size = m.prunedAt ? '(pruned)' : `${(m.sizeBytes / 2 ** 20).toFixed(2)} MiB`;
      console.log(`${String(m.version).padStart(7)}  ${String(m.status).padEnd(9)}  ${String(m.runId ?? '-').padEnd(27)}  ${String(m.round ?? '-').padStart(5)}  ${pct(acc).padStart(8)}  ${size}`);
    }
  });
}

export function describePromotion(p: Record<string, any>): string {
  const scope = p.nodes ? `canary on ${p.nodes.join(', ')}` : 'fleet';
  const acc = p.figures?.validationAccuracy ?? p.figures?.accuracy;
  return `v${p.version} (${scope}) by ${p.by} at ${p.at}${acc !== undefined ? `, accuracy ${pct(acc)}` : ''}: ${p.reason}`;
}

/** What the node's serving function last reported it runs (it reports on every load). */
function servedText(s: Record<string, any> | null | undefined): string {
  if (!s) return '; its serving function has not reported yet';
  if (s.version === null) return '; serving nothing (not ready)';
  return `; serving v${s.version}${s.canary ? ' (canary)' : ''}, held-out ${pct(s.figures?.validationAccuracy ?? s.figures?.accuracy)}`;
}

async function promoted(argv: string[]): Promise<number> {
  return show(argv, 'promoted --aggregator URL: what is promoted, what each node serves, the history', '/models/promoted', (out) => {
    console.log(out.fleet ? `promoted to the fleet: ${describePromotion(out.fleet)}` : 'nothing promoted yet: serving functions are not ready');
    for (const n of out.nodes as Record<string, any>[]) console.log(`  ${n.nodeId}: ${n.version === null ? 'nothing' : `v${n.version}`}${n.canary ? ' (canary)' : ''}${servedText(n.served)}`);
    console.log('history (newest first):');
    for (const p of out.history as Record<string, any>[]) console.log(`  ${describePromotion(p)}`);
  });
}

async function promoteCommand(argv: string[]): Promise<number> {
  const c = call(SCOPE, argv, 'promote V --aggregator URL [--nodes node-1,...]: to the fleet, or a canary to named nodes');
  if (!c) return 0;
  const [version, ...extra] = c.v._;
  if (!version || extra.length) throw new UsageError(MODELS_USAGE);
  const out = await request(c, 'POST', `/models/${encodeURIComponent(version)}/promote`, { nodes: nodesFlag(c.v.nodes), reason: c.v.reason });
  if (!out) return 1;
  console.log(c.json ? JSON.stringify(out, null, 2) : `promoted ${describePromotion(out)}`);
  return 0;
}

async function rollback(argv: string[]): Promise<number> {
  const c = call(SCOPE, argv, 'rollback --aggregator URL [--nodes ...]: promote the previous promoted version again');
  if (!c) return 0;
  const out = await request(c, 'POST', '/models/rollback', { nodes: nodesFlag(c.v.nodes), reason: c.v.reason });
  if (!out) return 1;
  console.log(c.json ? JSON.stringify(out, null, 2) : `rolled back: ${describePromotion(out)}`);
  return 0;
}

async function prune(argv: string[]): Promise<number> {
  const c = call(PRUNE, argv, 'prune --aggregator URL [--dry-run]: retention, what goes, what is kept and why');
  if (!c) return 0;
  const v = c.v;
  const body = { dryRun: v['dry-run'], pruneUpdates: !v['keep-updates'], keepCandidates: v['keep-candidates'], keepRollbackTargets: v['keep-rollback-targets'] };
  const out = await request(c, 'POST', '/models/prune', body);
  if (!out) return 1;
  if (c.json) return void console.log(JSON.stringify(out, null, 2)), 0;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const verb = out.dryRun ? 'would prune' : 'pruned';
  console.log(`${verb} the weights of ${out.prunedVersions.length} candidate version(s) (${mib(out.prunedModelBytes)})${out.prunedVersions.length ? ': v' + out.prunedVersions.join(', v') : ''}`);
  console.log(`${verb} ${out.prunedUpdates} trainer update(s) of finished rounds (${mib(out.prunedUpdateBytes)})`);
  console.log('kept:');
  for (const k of out.kept as { version: number; why: string[] }[]) console.log(`  v${k.version}: ${k.why.join(', ')}`);
  return 0;
}

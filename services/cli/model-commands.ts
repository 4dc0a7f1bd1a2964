import { ENV } from '../shared/config.js';
import { UsageError, num, parse } from './args.js';
import { aggregatorUrl } from './remote-commands.js';

export const MODELS_USAGE = `usage: edgefl models list|promoted|promote V [--nodes node-1,...]|rollback [--nodes ...]|prune [--dry-run] --aggregator URL [--token T]`;

const COMMON = { aggregator: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } } as const;

/** `edgefl models ...`: the model lifecycle on a running aggregator (promote and roll back need the admin token). */
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

function call(v: Record<string, string | boolean | undefined>): Call {
  return { base: aggregatorUrl(v.aggregator), token: (v.token as string | undefined) ?? process.env[ENV.adminToken], json: Boolean(v.json) };
}

async function request(c: Call, method: string, route: string, body?: unknown): Promise<Record<string, any> | undefined> {
  const res = await fetch(c.base + route, {
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

async function list(argv: string[]): Promise<number> {
  const c = call(parse(argv, COMMON));
  const out = await request(c, 'GET', '/models');
  if (!out) return 1;
  if (c.json) return void console.log(JSON.stringify(out, null, 2)), 0;
  console.log('version  status     run                          round  accuracy  size');
  for (const m of out.models as Record<string, any>[]) {
    const acc = m.metrics?.validationAccuracy ?? m.metrics?.accuracy;
    const size = m.prunedAt ? '(pruned)' : `${(m.sizeBytes / 2 ** 20).toFixed(2)} MiB`;
    console.log(`${String(m.version).padStart(7)}  ${String(m.status).padEnd(9)}  ${String(m.runId ?? '-').padEnd(27)}  ${String(m.round ?? '-').padStart(5)}  ${pct(acc).padStart(8)}  ${size}`);
  }
  return 0;
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
  const c = call(parse(argv, COMMON));
  const out = await request(c, 'GET', '/models/promoted');
  if (!out) return 1;
  if (c.json) return void console.log(JSON.stringify(out, null, 2)), 0;
  console.log(out.fleet ? `promoted to the fleet: ${describePromotion(out.fleet)}` : 'nothing promoted yet: serving functions are not ready');
  for (const n of out.nodes as Record<string, any>[]) console.log(`  ${n.nodeId}: ${n.version === null ? 'nothing' : `v${n.version}`}${n.canary ? ' (canary)' : ''}${servedText(n.served)}`);
  console.log('history (newest first):');
  for (const p of out.history as Record<string, any>[]) console.log(`  ${describePromotion(p)}`);
  return 0;
}

async function promoteCommand(argv: string[]): Promise<number> {
  const version = argv[0];
  if (!version || version.startsWith('-')) throw new UsageError(MODELS_USAGE);
  const v = parse(argv.slice(1), { ...COMMON, nodes: { type: 'string' }, reason: { type: 'string' } });
  const c = call(v);
  const out = await request(c, 'POST', `/models/${encodeURIComponent(version)}/promote`, { nodes: nodesFlag(v.nodes), reason: v.reason });
  if (!out) return 1;
  console.log(c.json ? JSON.stringify(out, null, 2) : `promoted ${describePromotion(out)}`);
  return 0;
}

async function rollback(argv: string[]): Promise<number> {
  const v = parse(argv, { ...COMMON, nodes: { type: 'string' }, reason: { type: 'string' } });
  const c = call(v);
  const out = await request(c, 'POST', '/models/rollback', { nodes: nodesFlag(v.nodes), reason: v.reason });
  if (!out) return 1;
  console.log(c.json ? JSON.stringify(out, null, 2) : `rolled back: ${describePromotion(out)}`);
  return 0;
}

async function prune(argv: string[]): Promise<number> {
  const v = parse(argv, { ...COMMON, 'dry-run': { type: 'boolean' }, 'keep-candidates': { type: 'string' }, 'keep-rollback-targets': { type: 'string' }, 'keep-updates': { type: 'boolean' } });
  const c = call(v);
  const body: Record<string, unknown> = { dryRun: Boolean(v['dry-run']), pruneUpdates: !v['keep-updates'] };
  if (v['keep-candidates'] !== undefined) body.keepCandidates = num(v, 'keep-candidates', 10);
  if (v['keep-rollback-targets'] !== undefined) body.keepRollbackTargets = num(v, 'keep-rollback-targets', 5);
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

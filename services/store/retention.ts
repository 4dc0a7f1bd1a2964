import type pg from 'pg';
import { z } from 'zod';
import { inTransaction } from './model-store.js';
import { promotionHistory, promotionsInForce } from './promotion.js';

/**
 * Retention: the database grows by one model-sized update per node per round. Updates of
 * finished rounds are deleted (nothing reads them again: a completed round is never
 * redone); old candidates keep their metadata row (lineage, round tables) but lose their
 * weights. Never pruned: what is promoted, its rollback targets, each run's best, what a
 * running run trains from, and the newest few candidates.
 */
export const RetentionPolicy = z.strictObject({
  /** The newest N versions are kept whatever they are. */
  keepCandidates: z.number().int().min(1).max(100_000).default(10),
  /** How many earlier promoted versions stay loadable for a rollback. */
  keepRollbackTargets: z.number().int().min(0).max(1000).default(5),
  /** Delete the trainers' updates of finished rounds. */
  pruneUpdates: z.boolean().default(true),
});
export type RetentionPolicy = z.infer<typeof RetentionPolicy>;
export const DEFAULT_RETENTION: RetentionPolicy = RetentionPolicy.parse({});

export interface RetentionPlan {
  /** Versions kept and why ('promoted', 'rollback target', 'best of run X', 'running run', 'newest'). */
  kept: { version: number; why: string[] }[];
  /** Candidate versions whose weights go. */
  prunedVersions: number[];
  prunedModelBytes: number;
  prunedUpdates: number;
  prunedUpdateBytes: number;
}

/** Pure: which unpruned versions lose their weights, given the reasons to keep some. */
export function choosePrunable(versions: readonly number[], keep: ReadonlyMap<number, string[]>): number[] {
  return versions.filter((v) => !keep.has(v));
}

/** Pure: each run's best round model by the figure that decides (validation accuracy, or the older single held-out figure). */
export function bestOfRuns(rounds: readonly { runId: string; version: number; metrics: Record<string, any> }[]): Map<string, number> {
  const best = new Map<string, { version: number; score: number }>();
  for (const r of rounds) {
    const score = Number(r.metrics.validationAccuracy ?? r.metrics.globalAccuracy ?? -1);
    const cur = best.get(r.runId);
    if (!cur || score > cur.score) best.set(r.runId, { version: r.version, score });
  }
  return new Map([...best].map(([run, b]) => [run, b.version]));
}

async function reasonsToKeep(db: pg.PoolClient, policy: RetentionPolicy): Promise<Map<number, string[]>> {
  const keep = new Map<number, string[]>();
  const add = (v: number | null | undefined, why: string) => {
    if (v === null || v === undefined) return;
    keep.set(Number(v), [...(keep.get(Number(v)) ?? []), why]);
  };
  const inForce = await promotionsInForce(db);
  for (const p of inForce) add(p.version, p.nodes ? `canary on ${p.nodes.join(',')}` : 'promoted');
  const targets = new Set<number>();
  for (const p of await promotionHistory(db, { limit: 1000 })) {
    if (targets.size >= policy.keepRollbackTargets) break;
    if (!keep.has(p.version) && !targets.has(p.version)) targets.add(p.version);
  }
  for (const v of targets) add(v, 'rollback target');
  const rounds = await db.query(`SELECT run_id, global_version, metrics FROM rounds WHERE status = 'completed' AND global_version IS NOT NULL`);
  for (const [run, v] of bestOfRuns(rounds.rows.map((r) => ({ runId: r.run_id, version: Number(r.global_version), metrics: r.metrics })))) add(v, `best of ${run}`);
  const running = await db.query(
    `SELECT latest_version AS v FROM runs WHERE status = 'running' UNION SELECT base_version FROM rounds WHERE status = 'running'`,
  );
  for (const r of running.rows) add(r.v, 'running run');
  const newest = await db.query('SELECT version FROM model_versions ORDER BY version DESC LIMIT $1', [policy.keepCandidates]);
  for (const r of newest.rows) add(r.version, 'newest');
  return keep;
}

async function plan(c: pg.PoolClient, policy: RetentionPolicy): Promise<RetentionPlan & { updateIds: number[] }> {
  const keep = await reasonsToKeep(c, policy);
  const live = await c.query(`SELECT version, octet_length(bytes) AS size FROM model_versions WHERE pruned_at IS NULL ORDER BY version`);
  const prunedVersions = choosePrunable(live.rows.map((r) => Number(r.version)), keep);
  const sizes = new Map(live.rows.map((r) => [Number(r.version), Number(r.size)]));
  const updates = policy.pruneUpdates
    ? await c.query(
        `SELECT u.id, octet_length(u.bytes) AS size FROM client_updates u
           LEFT JOIN runs r ON r.id = u.run_id
           LEFT JOIN rounds rd ON rd.run_id = u.run_id AND rd.round = u.round
         WHERE r.id IS NULL OR r.status <> 'running' OR rd.status = 'completed'`,
      )
    : { rows: [] as { id: string; size: string }[] };
  return {
    kept: [...keep].sort((a, b) => b[0] - a[0]).map(([version, why]) => ({ version, why })),
    prunedVersions,
    prunedModelBytes: prunedVersions.reduce((s, v) => s + (sizes.get(v) ?? 0), 0),
    prunedUpdates: updates.rows.length,
    prunedUpdateBytes: updates.rows.reduce((s, r) => s + Number(r.size), 0),
    updateIds: updates.rows.map((r) => Number(r.id)),
  };
}

const RETENTION_LOCK = 0x6564_7274; // "edrt": one pruning at a time

/** Plans (dryRun) or applies the policy in one transaction; promotions share-lock their version, so a concurrent promote waits or wins. */
export async function applyRetention(pool: pg.Pool, policy: RetentionPolicy, dryRun: boolean): Promise<RetentionPlan> {
  return inTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [RETENTION_LOCK]);
    // Lock out promotions while planning: a version promoted after the plan would otherwise lose its weights.
    if (!dryRun) await c.query('LOCK TABLE promotions IN SHARE ROW EXCLUSIVE MODE');
    const { updateIds, ...result } = await plan(c, policy);
    if (dryRun) return result;
    if (result.prunedVersions.length) {
      await c.query(`UPDATE model_versions SET bytes = '\\x'::bytea, pruned_at = now() WHERE version = ANY($1::bigint[]) AND pruned_at IS NULL`, [result.prunedVersions]);
    }
    if (updateIds.length) await c.query('DELETE FROM client_updates WHERE id = ANY($1::bigint[])', [updateIds]);
    return result;
  });
}

/** EDGEFL_RETENTION: unset or 'off' (default): prune only on request; 'on': the default policy after every finished run; or a JSON policy. */
export function retentionFromEnv(value: string | undefined): RetentionPolicy | undefined {
  if (value === undefined || value === '' || value === 'off') return undefined;
  if (value === 'on') return DEFAULT_RETENTION;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error(`EDGEFL_RETENTION must be 'on', 'off' or a JSON policy such as {"keepCandidates":20}; got '${value}'`);
  }
  const r = RetentionPolicy.safeParse(parsed);
  if (!r.success) throw new Error(`EDGEFL_RETENTION: ${r.error.issues.map((i) => `${i.path.join('.') || 'policy'}: ${i.message}`).join('; ')}`);
  return r.data;
}

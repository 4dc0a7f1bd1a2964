/**
 * Asynchronous aggregation's ledger (strategy fedbuff): one row per invocation of a node,
 * with the global version it trained from, how stale its update arrived, and what became of
 * it (buffered, aggregated into which aggregation, discarded as stale, rejected, failed).
 * The update's weights stay in client_updates (no foreign key: retention prunes those).
 */
import type pg from 'pg';

type Queryable = pg.Pool | pg.PoolClient;

export const ASYNC_UPDATES_SQL = `
  CREATE TABLE async_updates (
    run_id           text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    invocation       integer NOT NULL,
    node_id          text NOT NULL,
    base_version     bigint NOT NULL,
    base_aggregation integer NOT NULL CHECK (base_aggregation >= 0),
    status           text NOT NULL CHECK (status IN ('training','buffered','aggregated','stale','rejected','failed')),
    update_id        bigint,
    staleness        integer CHECK (staleness >= 0),
    aggregation      integer,
    reason           text,
    dispatched_at    timestamptz NOT NULL DEFAULT now(),
    arrived_at       timestamptz,
    PRIMARY KEY (run_id, invocation)
  );
`;

export type AsyncUpdateStatus = 'training' | 'buffered' | 'aggregated' | 'stale' | 'rejected' | 'failed';

export interface AsyncUpdateRow {
  invocation: number;
  nodeId: string;
  baseVersion: number;
  baseAggregation: number;
  status: AsyncUpdateStatus;
  updateId: number | null;
  staleness: number | null;
  aggregation: number | null;
  reason: string | null;
}

function toRow(r: Record<string, any>): AsyncUpdateRow {
  return {
    invocation: r.invocation,
    nodeId: r.node_id,
    baseVersion: Number(r.base_version),
    baseAggregation: r.base_aggregation,
    status: r.status,
    updateId: r.update_id === null ? null : Number(r.update_id),
    staleness: r.staleness,
    aggregation: r.aggregation,
    reason: r.reason,
  };
}

export async function recordDispatch(db: Queryable, runId: string, d: { invocation: number; nodeId: string; baseVersion: number; baseAggregation: number }): Promise<void> {
  await db.query(`INSERT INTO async_updates (run_id, invocation, node_id, base_version, base_aggregation, status) VALUES ($1,$2,$3,$4,$5,'training')`, [
    runId,
    d.invocation,
    d.nodeId,
    d.baseVersion,
    d.baseAggregation,
  ]);
}

export async function recordArrival(db: Queryable, runId: string, invocation: number, a: { status: Exclude<AsyncUpdateStatus, 'training' | 'aggregated'>; updateId?: number; staleness?: number; reason?: string }): Promise<void> {
  await db.query(`UPDATE async_updates SET status = $3, update_id = $4, staleness = $5, reason = $6, arrived_at = now() WHERE run_id = $1 AND invocation = $2`, [
    runId,
    invocation,
    a.status,
    a.updateId ?? null,
    a.staleness ?? null,
    a.reason ?? null,
  ]);
}

/** Marks the buffered invocations as folded into `aggregation` (before it is published: see reopenBuffered). */
export async function markAggregated(db: Queryable, runId: string, invocations: readonly number[], aggregation: number): Promise<void> {
  await db.query(`UPDATE async_updates SET status = 'aggregated', aggregation = $3 WHERE run_id = $1 AND invocation = ANY($2::int[])`, [runId, invocations, aggregation]);
}

/**
 * On resume: invocations left training by the previous process failed; updates marked for an
 * aggregation that was never published go back to the buffer. Returns the buffered rows.
 */
export async function reopenBuffered(db: Queryable, runId: string, publishedAggregations: number): Promise<AsyncUpdateRow[]> {
  await db.query(`UPDATE async_updates SET status = 'failed', reason = 'the aggregator restarted while it trained' WHERE run_id = $1 AND status = 'training'`, [runId]);
  await db.query(`UPDATE async_updates SET status = 'buffered', aggregation = NULL WHERE run_id = $1 AND status = 'aggregated' AND aggregation > $2`, [runId, publishedAggregations]);
  const res = await db.query(`SELECT * FROM async_updates WHERE run_id = $1 AND status = 'buffered' ORDER BY invocation`, [runId]);
  return res.rows.map(toRow);
}

export async function lastInvocation(db: Queryable, runId: string): Promise<number | undefined> {
  const res = await db.query('SELECT max(invocation) AS n FROM async_updates WHERE run_id = $1', [runId]);
  return res.rows[0]?.n ?? undefined;
}

export async function listAsyncUpdates(db: Queryable, runId: string): Promise<AsyncUpdateRow[]> {
  const res = await db.query('SELECT * FROM async_updates WHERE run_id = $1 ORDER BY invocation', [runId]);
  return res.rows.map(toRow);
}

export interface AsyncSummary {
  /** Global versions published by aggregation (the run's completed rounds). */
  aggregations: number;
  invocations: number;
  byStatus: Partial<Record<AsyncUpdateStatus, number>>;
  /** Staleness → count, over the updates that arrived (aggregated, buffered or discarded as stale). */
  stalenessHistogram: Record<string, number>;
  /** Mean staleness of the aggregated updates (null before the first aggregation). */
  meanStaleness: number | null;
  discardedStale: number;
}

export async function asyncSummary(db: Queryable, runId: string): Promise<AsyncSummary | undefined> {
  const rows = (await db.query(`SELECT status, staleness, count(*)::int AS n FROM async_updates WHERE run_id = $1 GROUP BY status, staleness`, [runId])).rows as { status: AsyncUpdateStatus; staleness: number | null; n: number }[];
  if (!rows.length) return undefined;
  const aggregations = (await db.query(`SELECT count(*)::int AS n FROM rounds WHERE run_id = $1 AND status = 'completed'`, [runId])).rows[0].n as number;
  return { aggregations, ...summarise(rows) };
}

/** The summary from (status, staleness, count) groups. */
export function summarise(rows: readonly { status: AsyncUpdateStatus; staleness: number | null; n: number }[]): Omit<AsyncSummary, 'aggregations'> {
  const byStatus: AsyncSummary['byStatus'] = {};
  const stalenessHistogram: Record<string, number> = {};
  let aggregated = 0;
  let staleSum = 0;
  for (const r of rows) {
    byStatus[r.status] = (byStatus[r.status] ?? 0) + r.n;
    if (r.staleness !== null) stalenessHistogram[r.staleness] = (stalenessHistogram[r.staleness] ?? 0) + r.n;
    if (r.status === 'aggregated' && r.staleness !== null) {
      aggregated += r.n;
      staleSum += r.n * r.staleness;
    }
  }
  const invocations = rows.reduce((s, r) => s + r.n, 0);
  return { invocations, byStatus, stalenessHistogram, meanStaleness: aggregated ? staleSum / aggregated : null, discardedStale: byStatus.stale ?? 0 };
}

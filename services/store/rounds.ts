/** Federated rounds: the only module that writes SQL for rounds. */
import type pg from 'pg';
import { rowMapper } from './rows.js';
import { inTransaction, type Queryable } from './transaction.js';
import { insertModelVersion, type NewModelVersion } from './versions.js';

export interface RoundRow {
  runId: string;
  round: number;
  status: 'running' | 'completed' | 'failed';
  config: Record<string, any>;
  baseVersion: number;
  globalVersion: number | null;
  selected: string[];
  quorum: number;
  deadline: string;
  metrics: Record<string, any>;
  attempt: number;
  startedAt: string;
  finishedAt: string | null;
}

const toRound = rowMapper<RoundRow>(
  'run_id round status config base_version:number global_version:number? selected quorum deadline:time metrics attempt started_at:time finished_at:time?',
);

export interface NewRound {
  runId: string;
  round: number;
  config: Record<string, unknown>;
  baseVersion: number;
  selected: string[];
  quorum: number;
  deadline: Date;
}

/**
 * Opens a round, or returns the one already open (a resumed aggregator re-enters it).
 * A failed round is reopened as a new attempt with a fresh deadline.
 */
export async function openRound(db: Queryable, r: NewRound): Promise<RoundRow> {
  const res = await db.query(
    `INSERT INTO rounds (run_id, round, status, config, base_version, selected, quorum, deadline)
     VALUES ($1,$2,'running',$3,$4,$5,$6,$7)
     ON CONFLICT (run_id, round) DO UPDATE SET
       status = 'running', deadline = EXCLUDED.deadline, attempt = rounds.attempt + 1, selected = EXCLUDED.selected,
       started_at = now(), finished_at = NULL
       WHERE rounds.status = 'failed'
     RETURNING *`,
    [r.runId, r.round, JSON.stringify(r.config), r.baseVersion, r.selected, r.quorum, r.deadline],
  );
  if (res.rows[0]) {
    await db.query('UPDATE runs SET current_round = $2, updated_at = now() WHERE id = $1', [r.runId, r.round]);
    return toRound(res.rows[0]);
  }
  return (await getRound(db, r.runId, r.round))!;
}

export async function extendRoundDeadline(db: Queryable, runId: string, round: number, deadline: Date): Promise<void> {
  await db.query(`UPDATE rounds SET deadline = $3 WHERE run_id = $1 AND round = $2 AND status = 'running'`, [runId, round, deadline]);
}

export async function getRound(db: Queryable, runId: string, round: number): Promise<RoundRow | undefined> {
  const res = await db.query('SELECT * FROM rounds WHERE run_id = $1 AND round = $2', [runId, round]);
  return res.rows[0] ? toRound(res.rows[0]) : undefined;
}

export async function listRounds(db: Queryable, runId: string): Promise<RoundRow[]> {
  const res = await db.query('SELECT * FROM rounds WHERE run_id = $1 ORDER BY round', [runId]);
  return res.rows.map(toRound);
}

export async function failRound(db: Queryable, runId: string, round: number, metrics: Record<string, unknown>): Promise<void> {
  await db.query(`UPDATE rounds SET status = 'failed', metrics = $3, finished_at = now() WHERE run_id = $1 AND round = $2 AND status = 'running'`, [
    runId,
    round,
    JSON.stringify(metrics),
  ]);
}

/**
 * Closes, as failed with `reason`, every round still 'running' whose run has ended (an
 * aggregator died between ending the run and closing its round). Returns how many.
 */
export async function closeRoundsOfEndedRuns(db: Queryable, reason: string): Promise<number> {
  const res = await db.query(
    `UPDATE rounds SET status = 'failed', finished_at = now(), metrics = rounds.metrics || jsonb_build_object('reason', $1::text)
     FROM runs WHERE runs.id = rounds.run_id AND rounds.status = 'running' AND runs.status <> 'running'`,
    [reason],
  );
  return res.rowCount ?? 0;
}

/**
 * Publishes the round's global model and closes the round in one transaction, so a crash
 * leaves either both or neither: a resumed run never publishes the same round twice.
 */
export async function completeRound(
  pool: pg.Pool,
  runId: string,
  round: number,
  model: NewModelVersion,
  metrics: Record<string, unknown>,
  bestAccuracy: number,
  /** The strategy's server-side state after this round (FedAvgM's momentum), saved with the model it produced. */
  strategyState?: Buffer,
  /** The promotion the run's policy gives this round's model, recorded atomically with it. */
  promotion?: PolicyPromotion,
): Promise<number> {
  return inTransaction(pool, async (c) => {
    const current = await c.query(`SELECT status, global_version FROM rounds WHERE run_id = $1 AND round = $2 FOR UPDATE`, [runId, round]);
    if (current.rows[0]?.status === 'completed') return Number(current.rows[0].global_version);
    const version = await insertModelVersion(c, model);
    await c.query(`UPDATE rounds SET status = 'completed', global_version = $3, metrics = $4, finished_at = now() WHERE run_id = $1 AND round = $2`, [
      runId,
      round,
      version,
      JSON.stringify(metrics),
    ]);
    await c.query(`UPDATE runs SET latest_version = $2, best_accuracy = $3, strategy_state = COALESCE($4, strategy_state), updated_at = now() WHERE id = $1`, [
      runId,
      version,
      bestAccuracy,
      strategyState ?? null,
    ]);
    if (promotion) await promotion.record(c, version);
    return version;
  });
}

/** Writes a promotion of `version` on the transaction's client (promotion.ts owns the SQL; this keeps the modules acyclic). */
export interface PolicyPromotion {
  record(c: pg.PoolClient, version: number): Promise<unknown>;
}

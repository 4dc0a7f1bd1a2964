/** Training runs: the only module that writes SQL for runs, bar the round writes in rounds.ts. */
import { rowMapper } from './rows.js';
import type { Queryable } from './transaction.js';

export type RunStatus = 'pending' | 'running' | 'completed' | 'stopped' | 'failed';

export interface RunRow {
  id: string;
  status: RunStatus;
  config: Record<string, any>;
  stopReason: string | null;
  currentRound: number;
  bestAccuracy: number | null;
  initialVersion: number | null;
  latestVersion: number | null;
  stopRequested: boolean;
  createdAt: string;
  updatedAt: string;
}

const toRun = rowMapper<RunRow>(
  'id status config stop_reason current_round best_accuracy initial_version:number? latest_version:number? stop_requested created_at:time updated_at:time',
);

export async function createRun(db: Queryable, id: string, config: Record<string, unknown>, initialVersion: number): Promise<RunRow> {
  const res = await db.query(
    `INSERT INTO runs (id, status, config, initial_version, latest_version) VALUES ($1, 'running', $2, $3, $3) RETURNING *`,
    [id, JSON.stringify(config), initialVersion],
  );
  return toRun(res.rows[0]);
}

export async function getRun(db: Queryable, id: string): Promise<RunRow | undefined> {
  const res = await db.query('SELECT * FROM runs WHERE id = $1', [id]);
  return res.rows[0] ? toRun(res.rows[0]) : undefined;
}

export async function listRuns(db: Queryable, limit = 100): Promise<RunRow[]> {
  const res = await db.query('SELECT * FROM runs ORDER BY created_at DESC LIMIT $1', [limit]);
  return res.rows.map(toRun);
}

export async function runsInProgress(db: Queryable): Promise<RunRow[]> {
  const res = await db.query(`SELECT * FROM runs WHERE status = 'running' ORDER BY created_at`);
  return res.rows.map(toRun);
}

export async function getStrategyState(db: Queryable, runId: string): Promise<Buffer | undefined> {
  const res = await db.query('SELECT strategy_state FROM runs WHERE id = $1', [runId]);
  return res.rows[0]?.strategy_state ?? undefined;
}

export async function finishRun(db: Queryable, id: string, status: RunStatus, reason: string): Promise<void> {
  await db.query(`UPDATE runs SET status = $2, stop_reason = $3, updated_at = now() WHERE id = $1 AND status = 'running'`, [id, status, reason]);
}

export async function requestStop(db: Queryable, id: string): Promise<boolean> {
  const res = await db.query(`UPDATE runs SET stop_requested = true, updated_at = now() WHERE id = $1 AND status = 'running'`, [id]);
  return (res.rowCount ?? 0) > 0;
}

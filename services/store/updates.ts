/** Client updates: the only module that writes SQL for client_updates. */
import { rowMapper } from './rows.js';
import type { Queryable } from './transaction.js';

export interface UpdateMeta {
  id: number;
  runId: string;
  round: number;
  nodeId: string;
  baseVersion: number;
  checksum: string;
  sampleCount: number;
  metrics: Record<string, any>;
  durationMs: number;
  createdAt: string;
}

const toUpdate = rowMapper<UpdateMeta>('id:number run_id round node_id base_version:number checksum sample_count metrics duration_ms created_at:time');

const UPDATE_META = 'id, run_id, round, node_id, base_version, checksum, sample_count, metrics, duration_ms, created_at';

export interface NewUpdate {
  runId: string;
  round: number;
  nodeId: string;
  baseVersion: number;
  bytes: Buffer;
  checksum: string;
  sampleCount: number;
  metrics: Record<string, unknown>;
  durationMs: number;
}

/** Stores a node's update once; a repeat for the same (run, round, node) returns the first, unchanged. */
export async function insertUpdate(db: Queryable, u: NewUpdate): Promise<{ update: UpdateMeta; created: boolean }> {
  const res = await db.query(
    `INSERT INTO client_updates (run_id, round, node_id, base_version, bytes, checksum, sample_count, metrics, duration_ms)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (run_id, round, node_id) DO NOTHING RETURNING ${UPDATE_META}`,
    [u.runId, u.round, u.nodeId, u.baseVersion, u.bytes, u.checksum, u.sampleCount, JSON.stringify(u.metrics), u.durationMs],
  );
  if (res.rows[0]) return { update: toUpdate(res.rows[0]), created: true };
  return { update: (await findUpdate(db, u.runId, u.round, u.nodeId))!, created: false };
}

export async function findUpdate(db: Queryable, runId: string, round: number, nodeId: string): Promise<UpdateMeta | undefined> {
  const res = await db.query(`SELECT ${UPDATE_META} FROM client_updates WHERE run_id = $1 AND round = $2 AND node_id = $3`, [runId, round, nodeId]);
  return res.rows[0] ? toUpdate(res.rows[0]) : undefined;
}

export async function listUpdates(db: Queryable, runId: string, round: number): Promise<UpdateMeta[]> {
  const res = await db.query(`SELECT ${UPDATE_META} FROM client_updates WHERE run_id = $1 AND round = $2 ORDER BY node_id`, [runId, round]);
  return res.rows.map(toUpdate);
}

export async function listRunUpdates(db: Queryable, runId: string): Promise<UpdateMeta[]> {
  const res = await db.query(`SELECT ${UPDATE_META} FROM client_updates WHERE run_id = $1 ORDER BY round, node_id`, [runId]);
  return res.rows.map(toUpdate);
}

export async function getUpdateBytes(db: Queryable, id: number): Promise<Buffer | undefined> {
  const res = await db.query('SELECT bytes FROM client_updates WHERE id = $1', [id]);
  return res.rows[0]?.bytes;
}

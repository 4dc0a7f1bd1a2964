import type pg from 'pg';
import { CODEC_MAGIC, type Manifest } from '../core/codec.js';

/** The only module that writes SQL for models, runs, rounds, updates and nodes. Parameterised queries only. */
export const MODEL_CHANNEL = 'edgefl_model_published';

type Queryable = pg.Pool | pg.PoolClient;

export interface ModelVersionMeta {
  version: number;
  parentVersion: number | null;
  runId: string | null;
  round: number | null;
  checksum: string;
  dtype: string;
  sizeBytes: number;
  metrics: Record<string, unknown>;
  createdAt: string;
  /** Set when retention dropped the weights of this candidate (the row stays for lineage). */
  prunedAt: string | null;
}

export interface ModelVersion extends ModelVersionMeta {
  bytes: Buffer;
}

export interface NewModelVersion {
  bytes: Buffer;
  checksum: string;
  manifest: Manifest | Record<string, unknown>;
  dtype?: string;
  parentVersion?: number | null;
  runId?: string | null;
  round?: number | null;
  metrics?: Record<string, unknown>;
}

const META_COLUMNS = `version, parent_version, run_id, round, checksum, dtype, octet_length(bytes) AS size_bytes, metrics, created_at, pruned_at`;

function toMeta(r: Record<string, any>): ModelVersionMeta {
  return {
    version: Number(r.version),
    parentVersion: r.parent_version === null ? null : Number(r.parent_version),
    runId: r.run_id,
    round: r.round,
    checksum: r.checksum,
    dtype: r.dtype,
    sizeBytes: Number(r.size_bytes),
    metrics: r.metrics ?? {},
    createdAt: new Date(r.created_at).toISOString(),
    prunedAt: r.pruned_at ? new Date(r.pruned_at).toISOString() : null,
  };
}

/** Inserts a version and notifies listeners; call inside a transaction to make it atomic with other writes. */
export async function insertModelVersion(db: Queryable, m: NewModelVersion): Promise<number> {
  const res = await db.query(
    `INSERT INTO model_versions (parent_version, run_id, round, bytes, manifest, checksum, dtype, metrics)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING version`,
    [m.parentVersion ?? null, m.runId ?? null, m.round ?? null, m.bytes, JSON.stringify(m.manifest), m.checksum, m.dtype ?? 'float32', JSON.stringify(m.metrics ?? {})],
  );
  const version = Number(res.rows[0].version);
  // NOTIFY is delivered at commit, so listeners never see a version that rolls back.
  await db.query('SELECT pg_notify($1, $2)', [MODEL_CHANNEL, String(version)]);
  return version;
}

export async function publishModel(pool: pg.Pool, m: NewModelVersion): Promise<number> {
  return inTransaction(pool, (c) => insertModelVersion(c, m));
}

function toModel(r: Record<string, any> | undefined): ModelVersion | undefined {
  return r ? { ...toMeta(r), bytes: r.bytes } : undefined;
}

export async function getModel(db: Queryable, version: number): Promise<ModelVersion | undefined> {
  const res = await db.query(`SELECT ${META_COLUMNS}, bytes FROM model_versions WHERE version = $1`, [version]);
  return toModel(res.rows[0]);
}

export async function getLatestModel(db: Queryable): Promise<ModelVersion | undefined> {
  const res = await db.query(`SELECT ${META_COLUMNS}, bytes FROM model_versions ORDER BY version DESC LIMIT 1`);
  return toModel(res.rows[0]);
}

export async function getModelMeta(db: Queryable, version: number): Promise<ModelVersionMeta | undefined> {
  const res = await db.query(`SELECT ${META_COLUMNS} FROM model_versions WHERE version = $1`, [version]);
  return res.rows[0] ? toMeta(res.rows[0]) : undefined;
}

export async function latestVersion(db: Queryable): Promise<number | undefined> {
  const res = await db.query('SELECT max(version) AS v FROM model_versions');
  return res.rows[0].v === null ? undefined : Number(res.rows[0].v);
}

export async function listModels(db: Queryable, limit = 100): Promise<ModelVersionMeta[]> {
  const res = await db.query(`SELECT ${META_COLUMNS} FROM model_versions ORDER BY version DESC LIMIT $1`, [limit]);
  return res.rows.map(toMeta);
}

// ---- runs ---------------------------------------------------------------

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

function toRun(r: Record<string, any>): RunRow {
  return {
    id: r.id,
    status: r.status,
    config: r.config,
    stopReason: r.stop_reason,
    currentRound: r.current_round,
    bestAccuracy: r.best_accuracy,
    initialVersion: r.initial_version === null ? null : Number(r.initial_version),
    latestVersion: r.latest_version === null ? null : Number(r.latest_version),
    stopRequested: r.stop_requested,
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
  };
}

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

// ---- rounds -------------------------------------------------------------

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

function toRound(r: Record<string, any>): RoundRow {
  return {
    runId: r.run_id,
    round: r.round,
    status: r.status,
    config: r.config,
    baseVersion: Number(r.base_version),
    globalVersion: r.global_version === null ? null : Number(r.global_version),
    selected: r.selected,
    quorum: r.quorum,
    deadline: new Date(r.deadline).toISOString(),
    metrics: r.metrics,
    attempt: r.attempt,
    startedAt: new Date(r.started_at).toISOString(),
    finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null,
  };
}

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

// ---- client updates -----------------------------------------------------

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

function toUpdate(r: Record<string, any>): UpdateMeta {
  return {
    id: Number(r.id),
    runId: r.run_id,
    round: r.round,
    nodeId: r.node_id,
    baseVersion: Number(r.base_version),
    checksum: r.checksum,
    sampleCount: r.sample_count,
    metrics: r.metrics,
    durationMs: r.duration_ms,
    createdAt: new Date(r.created_at).toISOString(),
  };
}

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

// ---- nodes --------------------------------------------------------------

export interface NodeRow {
  id: string;
  lastSeen: string;
  shardSize: number;
  labelHistogram: number[];
  info: Record<string, any>;
}

export async function upsertNode(db: Queryable, n: { id: string; shardSize: number; labelHistogram: number[]; info?: Record<string, unknown> }): Promise<void> {
  await db.query(
    `INSERT INTO nodes (id, shard_size, label_histogram, info) VALUES ($1,$2,$3,$4)
     ON CONFLICT (id) DO UPDATE SET last_seen = now(), shard_size = EXCLUDED.shard_size,
       label_histogram = EXCLUDED.label_histogram, info = nodes.info || EXCLUDED.info`,
    [n.id, n.shardSize, JSON.stringify(n.labelHistogram), JSON.stringify(n.info ?? {})],
  );
}

export async function listNodes(db: Queryable): Promise<NodeRow[]> {
  const res = await db.query('SELECT * FROM nodes ORDER BY id');
  return res.rows.map((r) => ({ id: r.id, lastSeen: new Date(r.last_seen).toISOString(), shardSize: r.shard_size, labelHistogram: r.label_histogram, info: r.info }));
}

// ---- helpers ------------------------------------------------------------

export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

export const isCodecManifest = (m: unknown): m is Manifest => (m as Manifest)?.format === CODEC_MAGIC;

import type pg from 'pg';
import { CODEC_MAGIC, type Manifest } from '../core/codec.js';
import { rowMapper } from './rows.js';
import { inTransaction, type Queryable } from './transaction.js';

/** Model versions: the only module that writes SQL for model_versions. Parameterised queries only. */
export const MODEL_CHANNEL = 'edgefl_model_published';

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

const metaOf = rowMapper<ModelVersionMeta>('version:number parent_version:number? run_id round checksum dtype size_bytes:number metrics created_at:time pruned_at:time?');

function toMeta(r: Record<string, any>): ModelVersionMeta {
  return { ...metaOf(r), metrics: r.metrics ?? {} };
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

export const isCodecManifest = (m: unknown): m is Manifest => (m as Manifest)?.format === CODEC_MAGIC;

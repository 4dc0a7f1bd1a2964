import type pg from 'pg';
import { inTransaction, type ModelVersion } from './model-store.js';

/**
 * The model lifecycle. Every published version is a candidate; what serves is decided
 * only by the promotions table: the newest promotion that covers a node (the whole
 * fleet, or a canary list naming it) is the version that node serves. Rows are only
 * ever appended, so the table is also the history (who, when, why, on what figures).
 */
export const PROMOTION_CHANNEL = 'edgefl_model_promoted';

type Queryable = pg.Pool | pg.PoolClient;

export interface Promotion {
  id: number;
  version: number;
  /** null: the whole fleet; otherwise a canary for these edge nodes only. */
  nodes: string[] | null;
  /** 'admin', 'policy:best', 'policy:latest', 'migration'. */
  by: string;
  reason: string;
  /** The held-out figures the version was judged on (validation and test accuracy, ...). */
  figures: Record<string, unknown>;
  runId: string | null;
  at: string;
}

export interface NewPromotion {
  version: number;
  nodes?: string[] | null;
  by: string;
  reason: string;
  figures?: Record<string, unknown>;
  runId?: string | null;
}

export type PromotionErrorCode = 'model_not_found' | 'model_pruned' | 'model_corrupt';

export class PromotionError extends Error {
  constructor(readonly code: PromotionErrorCode, message: string) {
    super(message);
  }
}

function toPromotion(r: Record<string, any>): Promotion {
  return {
    id: Number(r.id),
    version: Number(r.version),
    nodes: r.nodes,
    by: r.promoted_by,
    reason: r.reason,
    figures: r.figures ?? {},
    runId: r.run_id,
    at: new Date(r.promoted_at).toISOString(),
  };
}

/**
 * Records a promotion and announces it (NOTIFY is delivered at commit). The version's
 * row is share-locked so retention cannot prune it between the check and the insert;
 * `verify` (the codec's integrity check) throws for weights that must never serve.
 * Call inside a transaction to make a promotion atomic with other writes.
 */
export async function insertPromotion(c: pg.PoolClient, p: NewPromotion, verify?: (m: ModelVersion) => void): Promise<Promotion> {
  const res = await c.query(`SELECT version, bytes, checksum, pruned_at FROM model_versions WHERE version = $1 FOR SHARE`, [p.version]);
  const row = res.rows[0];
  if (!row) throw new PromotionError('model_not_found', `no model version ${p.version}`);
  if (row.pruned_at) throw new PromotionError('model_pruned', `model version ${p.version} was pruned by retention; its weights are gone`);
  try {
    verify?.({ version: p.version, bytes: row.bytes, checksum: row.checksum } as ModelVersion);
  } catch (e) {
    throw new PromotionError('model_corrupt', `model version ${p.version} fails its integrity check (${(e as Error).message}); it can never serve`);
  }
  const nodes = p.nodes?.length ? [...new Set(p.nodes)].sort() : null;
  const inserted = await c.query(
    `INSERT INTO promotions (version, nodes, promoted_by, reason, figures, run_id) VALUES ($1,$2,$3,$4,$5,$6) RETURNING *`,
    [p.version, nodes, p.by, p.reason, JSON.stringify(p.figures ?? {}), p.runId ?? null],
  );
  const promotion = toPromotion(inserted.rows[0]);
  await c.query('SELECT pg_notify($1, $2)', [PROMOTION_CHANNEL, JSON.stringify({ id: promotion.id, version: promotion.version, nodes: promotion.nodes })]);
  return promotion;
}

export function promote(pool: pg.Pool, p: NewPromotion, verify?: (m: ModelVersion) => void): Promise<Promotion> {
  return inTransaction(pool, (c) => insertPromotion(c, p, verify));
}

/** The promotion that decides what `nodeId` serves (without a node: the fleet's). */
export async function promotedFor(db: Queryable, nodeId?: string): Promise<Promotion | undefined> {
  const res = await db.query(`SELECT * FROM promotions WHERE nodes IS NULL OR $1 = ANY(nodes) ORDER BY id DESC LIMIT 1`, [nodeId ?? null]);
  return res.rows[0] ? toPromotion(res.rows[0]) : undefined;
}

/** Promotions newest first; with a node, only those that applied to it (fleet or canary naming it). */
export async function promotionHistory(db: Queryable, opts: { nodeId?: string; limit?: number } = {}): Promise<Promotion[]> {
  const res = await db.query(`SELECT * FROM promotions WHERE $1::text IS NULL OR nodes IS NULL OR $1 = ANY(nodes) ORDER BY id DESC LIMIT $2`, [
    opts.nodeId ?? null,
    opts.limit ?? 50,
  ]);
  return res.rows.map(toPromotion);
}

/**
 * The promotions in force: the newest fleet promotion and every canary after it
 * (a later fleet promotion supersedes all earlier canaries).
 */
export async function promotionsInForce(db: Queryable): Promise<Promotion[]> {
  const res = await db.query(
    `SELECT * FROM promotions WHERE id >= COALESCE((SELECT max(id) FROM promotions WHERE nodes IS NULL), 0) ORDER BY id DESC`,
  );
  return res.rows.map(toPromotion);
}

/** What a node serves according to the promotions in force (a pure reading of `promotionsInForce`). */
export function effectivePromotion(inForce: readonly Promotion[], nodeId: string): Promotion | undefined {
  return inForce.find((p) => p.nodes === null || p.nodes.includes(nodeId));
}

export interface ServingReport {
  nodeId: string;
  version: number | null;
  canary: boolean;
  reportedAt: string;
}

/**
 * A serving function records what it now serves. The aggregator reads this instead of
 * asking each function, which would wake the ones Knative scaled to zero.
 */
export async function reportServing(db: Queryable, nodeId: string, version: number, canary: boolean): Promise<void> {
  await db.query(
    `INSERT INTO serving_status (node_id, version, canary) VALUES ($1,$2,$3)
     ON CONFLICT (node_id) DO UPDATE SET version = EXCLUDED.version, canary = EXCLUDED.canary, reported_at = now()`,
    [nodeId, version, canary],
  );
}

export async function listServing(db: Queryable): Promise<ServingReport[]> {
  const res = await db.query('SELECT * FROM serving_status ORDER BY node_id');
  return res.rows.map((r) => ({ nodeId: r.node_id, version: r.version === null ? null : Number(r.version), canary: r.canary, reportedAt: new Date(r.reported_at).toISOString() }));
}

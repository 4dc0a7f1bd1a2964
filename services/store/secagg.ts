/**
 * What secure aggregation keeps in PostgreSQL: per (run, round), each node's public keys,
 * the sealed shares it addressed to each peer, its masked input, and what it revealed to
 * unmask. Nothing here is a node's update in the clear: a masked input is uniformly random
 * without the masks, the shares are AES-GCM ciphertexts only their recipient can open.
 */
import type pg from 'pg';

type Queryable = pg.Pool | pg.PoolClient;

export const SECAGG_MIGRATION_SQL = `
  CREATE TABLE secagg_keys (
    id              bigserial UNIQUE,
    run_id          text NOT NULL,
    round           integer NOT NULL,
    attempt         integer NOT NULL,
    node_id         text NOT NULL,
    c_public        bytea NOT NULL,
    s_public        bytea NOT NULL,
    seed_commitment text NOT NULL,
    tag             text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, round, attempt, node_id)
  );
  CREATE TABLE secagg_shares (
    id         bigserial UNIQUE,
    run_id     text NOT NULL,
    round      integer NOT NULL,
    attempt    integer NOT NULL,
    from_node  text NOT NULL,
    to_node    text NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, round, attempt, from_node, to_node)
  );
  CREATE TABLE secagg_masked (
    id           bigserial PRIMARY KEY,
    run_id       text NOT NULL,
    round        integer NOT NULL,
    attempt      integer NOT NULL,
    node_id      text NOT NULL,
    base_version bigint NOT NULL,
    masked       bytea NOT NULL,
    tag          text NOT NULL,
    metrics      jsonb NOT NULL DEFAULT '{}',
    duration_ms  double precision NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, round, attempt, node_id)
  );
  CREATE TABLE secagg_unmask (
    id         bigserial PRIMARY KEY,
    run_id     text NOT NULL,
    round      integer NOT NULL,
    attempt    integer NOT NULL,
    node_id    text NOT NULL,
    survivors  text[] NOT NULL,
    shares     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, round, attempt, node_id)
  );
`;

/** One attempt of a round: a retried round runs the protocol afresh, with fresh keys. */
export interface RoundRef {
  runId: string;
  round: number;
  attempt: number;
}

export interface KeyRow {
  id: number;
  nodeId: string;
  cPublic: Buffer;
  sPublic: Buffer;
  seedCommitment: string;
  tag: string;
}

const toKey = (r: Record<string, any>): KeyRow => ({ id: Number(r.id), nodeId: r.node_id, cPublic: r.c_public, sPublic: r.s_public, seedCommitment: r.seed_commitment, tag: r.tag });

/** Idempotent: a repeated stage writes the same derived keys, so the first row stands. */
export async function insertKeys(db: Queryable, at: RoundRef, k: Omit<KeyRow, 'id'>): Promise<number> {
  await db.query(
    `INSERT INTO secagg_keys (run_id, round, attempt, node_id, c_public, s_public, seed_commitment, tag) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`,
    [at.runId, at.round, at.attempt, k.nodeId, k.cPublic, k.sPublic, k.seedCommitment, k.tag],
  );
  return (await listKeys(db, at, [k.nodeId]))[0]!.id;
}

export async function listKeys(db: Queryable, at: RoundRef, nodes?: readonly string[]): Promise<KeyRow[]> {
  const res = await db.query(`SELECT * FROM secagg_keys WHERE run_id = $1 AND round = $2 AND attempt = $3 AND ($4::text[] IS NULL OR node_id = ANY($4)) ORDER BY node_id`, [at.runId, at.round, at.attempt, nodes ?? null]);
  return res.rows.map(toKey);
}

export async function insertShares(db: Queryable, at: RoundRef, from: string, sealed: ReadonlyMap<string, Buffer>): Promise<number> {
  for (const [to, bytes] of sealed) {
    await db.query(`INSERT INTO secagg_shares (run_id, round, attempt, from_node, to_node, sealed) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING`, [at.runId, at.round, at.attempt, from, to, bytes]);
  }
  const res = await db.query(`SELECT max(id) AS id FROM secagg_shares WHERE run_id = $1 AND round = $2 AND attempt = $3 AND from_node = $4`, [at.runId, at.round, at.attempt, from]);
  return Number(res.rows[0].id);
}

/** Per sender: the recipients it sealed shares for (the aggregator checks every member of U1 got one). */
export async function shareRecipients(db: Queryable, at: RoundRef): Promise<Map<string, string[]>> {
  const res = await db.query(`SELECT from_node, array_agg(to_node ORDER BY to_node) AS recipients FROM secagg_shares WHERE run_id = $1 AND round = $2 AND attempt = $3 GROUP BY from_node`, [at.runId, at.round, at.attempt]);
  return new Map(res.rows.map((r) => [r.from_node as string, r.recipients as string[]]));
}

/** The sealed shares addressed to `to`, by sender. */
export async function sharesFor(db: Queryable, at: RoundRef, to: string): Promise<Map<string, Buffer>> {
  const res = await db.query(`SELECT from_node, sealed FROM secagg_shares WHERE run_id = $1 AND round = $2 AND attempt = $3 AND to_node = $4`, [at.runId, at.round, at.attempt, to]);
  return new Map(res.rows.map((r) => [r.from_node as string, r.sealed as Buffer]));
}

export interface MaskedRow {
  id: number;
  nodeId: string;
  baseVersion: number;
  masked: Buffer;
  tag: string;
  metrics: Record<string, any>;
  durationMs: number;
  createdAt: string;
}

const toMasked = (r: Record<string, any>): MaskedRow => ({
  id: Number(r.id),
  nodeId: r.node_id,
  baseVersion: Number(r.base_version),
  masked: r.masked,
  tag: r.tag,
  metrics: r.metrics,
  durationMs: r.duration_ms,
  createdAt: new Date(r.created_at).toISOString(),
});

export async function insertMasked(db: Queryable, at: RoundRef, m: Omit<MaskedRow, 'id' | 'createdAt'>): Promise<{ row: MaskedRow; created: boolean }> {
  const res = await db.query(
    `INSERT INTO secagg_masked (run_id, round, attempt, node_id, base_version, masked, tag, metrics, duration_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT DO NOTHING RETURNING *`,
    [at.runId, at.round, at.attempt, m.nodeId, m.baseVersion, m.masked, m.tag, JSON.stringify(m.metrics), m.durationMs],
  );
  if (res.rows[0]) return { row: toMasked(res.rows[0]), created: true };
  return { row: (await listMasked(db, at, [m.nodeId]))[0]!, created: false };
}

/** Which of `nodes` stored a masked input (ids only: the vectors are megabytes). */
export async function maskedIds(db: Queryable, at: RoundRef, nodes?: readonly string[]): Promise<Map<string, number>> {
  const res = await db.query(`SELECT node_id, id FROM secagg_masked WHERE run_id = $1 AND round = $2 AND attempt = $3 AND ($4::text[] IS NULL OR node_id = ANY($4))`, [at.runId, at.round, at.attempt, nodes ?? null]);
  return new Map(res.rows.map((r) => [r.node_id as string, Number(r.id)]));
}

export async function listMasked(db: Queryable, at: RoundRef, nodes?: readonly string[]): Promise<MaskedRow[]> {
  const res = await db.query(`SELECT * FROM secagg_masked WHERE run_id = $1 AND round = $2 AND attempt = $3 AND ($4::text[] IS NULL OR node_id = ANY($4)) ORDER BY node_id`, [at.runId, at.round, at.attempt, nodes ?? null]);
  return res.rows.map(toMasked);
}

export interface UnmaskRow {
  id: number;
  nodeId: string;
  survivors: string[];
  /** Per owner node: the revealed share, base64. */
  shares: Record<string, string>;
}

const toUnmask = (r: Record<string, any>): UnmaskRow => ({ id: Number(r.id), nodeId: r.node_id, survivors: r.survivors, shares: r.shares });

/** A node answers unmask once per round: a later request gets the first answer (it never reveals a second kind of share). */
export async function insertUnmask(db: Queryable, at: RoundRef, u: Omit<UnmaskRow, 'id'>): Promise<UnmaskRow> {
  await db.query(`INSERT INTO secagg_unmask (run_id, round, attempt, node_id, survivors, shares) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING`, [at.runId, at.round, at.attempt, u.nodeId, u.survivors, JSON.stringify(u.shares)]);
  return (await listUnmask(db, at, [u.nodeId]))[0]!;
}

export async function listUnmask(db: Queryable, at: RoundRef, nodes?: readonly string[]): Promise<UnmaskRow[]> {
  const res = await db.query(`SELECT * FROM secagg_unmask WHERE run_id = $1 AND round = $2 AND attempt = $3 AND ($4::text[] IS NULL OR node_id = ANY($4)) ORDER BY node_id`, [at.runId, at.round, at.attempt, nodes ?? null]);
  return res.rows.map(toUnmask);
}

/** Bytes a node wrote for one round (keys, shares sent, masked input, revealed shares): the bench's communication figure. */
export async function bytesWritten(db: Queryable, at: RoundRef, nodeId: string): Promise<number> {
  const res = await db.query(
    `SELECT
       (SELECT coalesce(sum(octet_length(c_public) + octet_length(s_public) + length(seed_commitment) + length(tag)), 0) FROM secagg_keys WHERE run_id = $1 AND round = $2 AND attempt = $3 AND node_id = $4) +
       (SELECT coalesce(sum(octet_length(sealed)), 0) FROM secagg_shares WHERE run_id = $1 AND round = $2 AND attempt = $3 AND from_node = $4) +
       (SELECT coalesce(sum(octet_length(masked) + length(tag)), 0) FROM secagg_masked WHERE run_id = $1 AND round = $2 AND attempt = $3 AND node_id = $4) +
       (SELECT coalesce(sum(octet_length(shares::text)), 0) FROM secagg_unmask WHERE run_id = $1 AND round = $2 AND attempt = $3 AND node_id = $4) AS total`,
    [at.runId, at.round, at.attempt, nodeId],
  );
  return Number(res.rows[0].total);
}

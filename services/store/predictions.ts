import type pg from 'pg';

/**
 * Results of event-driven inference (services/serving/inference-events.ts): one row per
 * image, keyed by (request id, item). Delivery is at-least-once (a Broker redelivers, an
 * inbox watcher resends after a restart), so writes are idempotent: the first result stored
 * for an item wins and a redelivery reads it back instead of adding a second one.
 * Schema: migration 6 (migrations.ts).
 */

export interface PredictionRecord {
  requestId: string;
  item: number;
  nodeId: string;
  /** The image's name: a file, an object key, or the name given inline. */
  source: string | null;
  modelVersion: number | null;
  /** Set for a result; null for an error record. */
  class: number | null;
  probabilities: number[] | null;
  error: { code: string; message: string } | null;
  latencyMs: number;
  createdAt?: string;
}

function toRecord(r: Record<string, any>): PredictionRecord {
  return {
    requestId: r.request_id,
    item: r.item,
    nodeId: r.node_id,
    source: r.source,
    modelVersion: r.model_version === null ? null : Number(r.model_version),
    class: r.class,
    probabilities: r.probabilities,
    error: r.error_code === null ? null : { code: r.error_code, message: r.error_message },
    latencyMs: r.latency_ms,
    createdAt: new Date(r.created_at).toISOString(),
  };
}

/**
 * Stores records whose (request id, item) is not stored yet and returns what is stored for
 * all of them afterwards, in item order: a redelivery gets the first delivery's results back.
 */
export async function recordPredictions(pool: pg.Pool, records: PredictionRecord[]): Promise<PredictionRecord[]> {
  if (records.length === 0) return [];
  const rows = records.map((r) => ({
    request_id: r.requestId,
    item: r.item,
    node_id: r.nodeId,
    source: r.source,
    model_version: r.modelVersion,
    class: r.class,
    probabilities: r.probabilities,
    error_code: r.error?.code ?? null,
    error_message: r.error?.message ?? null,
    latency_ms: r.latencyMs,
  }));
  await pool.query(
    `INSERT INTO predictions (request_id, item, node_id, source, model_version, class, probabilities, error_code, error_message, latency_ms)
     SELECT request_id, item, node_id, source, model_version, class, probabilities, error_code, error_message, latency_ms
       FROM jsonb_to_recordset($1::jsonb) AS x(request_id text, item integer, node_id text, source text, model_version bigint, class smallint,
                                               probabilities jsonb, error_code text, error_message text, latency_ms double precision)
     ON CONFLICT (request_id, item) DO NOTHING`,
    [JSON.stringify(rows)],
  );
  const items = records.map((r) => r.item);
  return storedItems(pool, records[0]!.requestId, Math.min(...items), Math.max(...items) + 1);
}

/** The stored records of items [from, to) of a request, in item order. */
export async function storedItems(pool: pg.Pool, requestId: string, from: number, to: number): Promise<PredictionRecord[]> {
  const { rows } = await pool.query('SELECT * FROM predictions WHERE request_id = $1 AND item >= $2 AND item < $3 ORDER BY item', [requestId, from, to]);
  return rows.map(toRecord);
}

/** One request's records (a batch may hold thousands: paged by item). */
export async function predictionsOf(pool: pg.Pool, requestId: string, page: { offset: number; limit: number }): Promise<{ total: number; records: PredictionRecord[] }> {
  const [total, records] = await Promise.all([
    pool.query<{ n: string }>('SELECT count(*) AS n FROM predictions WHERE request_id = $1', [requestId]),
    storedItems(pool, requestId, page.offset, page.offset + page.limit),
  ]);
  return { total: Number(total.rows[0]!.n), records };
}

/** The newest records, optionally of one node. */
export async function listPredictions(pool: pg.Pool, opts: { nodeId?: string; limit: number }): Promise<PredictionRecord[]> {
  const { rows } = await pool.query(
    `SELECT * FROM predictions WHERE ($1::text IS NULL OR node_id = $1) ORDER BY created_at DESC, request_id, item LIMIT $2`,
    [opts.nodeId ?? null, opts.limit],
  );
  return rows.map(toRecord);
}

export interface NodePredictionStats {
  nodeId: string;
  results: number;
  errors: number;
  meanLatencyMs: number | null;
  p95LatencyMs: number | null;
  lastAt: string;
}

/** Per node over the last `minutes`: results, error records and latency (the dashboard's card). */
export async function predictionStats(pool: pg.Pool, minutes: number): Promise<NodePredictionStats[]> {
  const { rows } = await pool.query(
    `SELECT node_id, count(*) FILTER (WHERE error_code IS NULL) AS results, count(*) FILTER (WHERE error_code IS NOT NULL) AS errors,
            avg(latency_ms) AS mean, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, max(created_at) AS last_at
       FROM predictions WHERE created_at > now() - make_interval(mins => $1) GROUP BY node_id ORDER BY node_id`,
    [minutes],
  );
  return rows.map((r) => ({
    nodeId: r.node_id,
    results: Number(r.results),
    errors: Number(r.errors),
    meanLatencyMs: r.mean === null ? null : Number(r.mean),
    p95LatencyMs: r.p95 === null ? null : Number(r.p95),
    lastAt: new Date(r.last_at).toISOString(),
  }));
}

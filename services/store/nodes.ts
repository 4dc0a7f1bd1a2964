/** Trainer nodes: the only module that writes SQL for nodes. */
import { rowMapper } from './rows.js';
import type { Queryable } from './transaction.js';

export interface NodeRow {
  id: string;
  lastSeen: string;
  shardSize: number;
  labelHistogram: number[];
  info: Record<string, any>;
}

const toNode = rowMapper<NodeRow>('id last_seen:time shard_size label_histogram info');

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
  return res.rows.map(toNode);
}

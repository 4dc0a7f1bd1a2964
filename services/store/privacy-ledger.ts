/**
 * Each node's privacy ledger: one row per DP mechanism it ran (a round's DP-SGD), so its
 * spent ε is the RDP composition of everything it has ever released, across rounds and
 * runs. ε is recomputed from the mechanisms rather than summed: RDP composes additively,
 * ε does not.
 */
import type pg from 'pg';
import { composeEvents, DEFAULT_ORDERS, epsilonFromRdp, type GaussianEvent } from '../core/privacy/rdp.js';

export interface LedgerEntry extends GaussianEvent {
  nodeId: string;
  runId: string;
  round: number;
  delta: number;
  /** The node's total ε (at this entry's δ) once this entry was recorded. */
  epsilonTotal: number;
}

interface Row {
  node_id: string;
  run_id: string;
  round: number;
  sampling_rate: number;
  noise_multiplier: number;
  steps: number;
  delta: number;
  epsilon_total: number;
}

function toEntry(r: Row): LedgerEntry {
  return {
    nodeId: r.node_id,
    runId: r.run_id,
    round: r.round,
    samplingRate: r.sampling_rate,
    noiseMultiplier: r.noise_multiplier,
    steps: r.steps,
    delta: r.delta,
    epsilonTotal: r.epsilon_total,
  };
}

const COLUMNS = 'node_id, run_id, round, sampling_rate, noise_multiplier, steps, delta, epsilon_total';

export async function ledgerOf(db: pg.Pool | pg.PoolClient, nodeId: string): Promise<LedgerEntry[]> {
  const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM privacy_ledger WHERE node_id = $1 ORDER BY id`, [nodeId]);
  return rows.map(toEntry);
}

/** ε of a set of mechanisms composed, at δ. */
export function spentEpsilon(events: readonly GaussianEvent[], delta: number): number {
  if (events.length === 0) return 0;
  return epsilonFromRdp(DEFAULT_ORDERS, composeEvents(events, DEFAULT_ORDERS), delta).epsilon;
}

export type Reservation =
  | { granted: true; entry: LedgerEntry; alreadyRecorded: boolean }
  | { granted: false; spent: number; wouldBe: number; budget: number };

/**
 * Records a round's mechanism BEFORE the node trains, if the node's total ε with it stays
 * within `epsilonBudget`. Recording first is the conservative order: a training that then
 * fails is counted although nothing was released, never the reverse. Serialised per node
 * with an advisory lock, so two replicas of one node cannot both spend the last of a budget.
 * A retry of the same (run, round) finds its entry and is granted without spending twice.
 */
export async function reservePrivacy(
  pool: pg.Pool,
  req: { nodeId: string; runId: string; round: number; event: GaussianEvent; delta: number; epsilonBudget: number },
): Promise<Reservation> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('privacy:' || $1))", [req.nodeId]);
    const past = await ledgerOf(client, req.nodeId);
    const same = past.find((e) => e.runId === req.runId && e.round === req.round);
    if (same) {
      await client.query('COMMIT');
      return { granted: true, entry: same, alreadyRecorded: true };
    }
    const spent = spentEpsilon(past, req.delta);
    const wouldBe = spentEpsilon([...past, req.event], req.delta);
    if (wouldBe > req.epsilonBudget) {
      await client.query('ROLLBACK');
      return { granted: false, spent, wouldBe, budget: req.epsilonBudget };
    }
    const { rows } = await client.query<Row>(
      `INSERT INTO privacy_ledger (node_id, run_id, round, mechanism, sampling_rate, noise_multiplier, steps, delta, epsilon_total)
       VALUES ($1, $2, $3, 'dp-sgd', $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
      [req.nodeId, req.runId, req.round, req.event.samplingRate, req.event.noiseMultiplier, req.event.steps, req.delta, wouldBe],
    );
    await client.query('COMMIT');
    return { granted: true, entry: toEntry(rows[0]!), alreadyRecorded: false };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

/** Shard sizes (from the nodes table) and ledgers of the given nodes, for the aggregator's budget view. */
export async function ledgersOf(pool: pg.Pool, nodeIds: readonly string[]): Promise<{ sizes: Map<string, number>; ledgers: Map<string, LedgerEntry[]> }> {
  const [nodes, entries] = await Promise.all([
    pool.query<{ id: string; shard_size: number }>('SELECT id, shard_size FROM nodes WHERE id = ANY($1)', [nodeIds]),
    pool.query<Row>(`SELECT ${COLUMNS} FROM privacy_ledger WHERE node_id = ANY($1) ORDER BY id`, [nodeIds]),
  ]);
  const ledgers = new Map<string, LedgerEntry[]>();
  for (const e of entries.rows.map(toEntry)) ledgers.set(e.nodeId, [...(ledgers.get(e.nodeId) ?? []), e]);
  return { sizes: new Map(nodes.rows.map((r) => [r.id, r.shard_size])), ledgers };
}

/** Ids of the registered nodes (at most `limit`), for views of a run that has chosen none yet. */
export async function registeredNodeIds(pool: pg.Pool, limit = 1000): Promise<string[]> {
  return (await pool.query<{ id: string }>('SELECT id FROM nodes ORDER BY id LIMIT $1', [limit])).rows.map((r) => r.id);
}

/** Each node's total spent ε at δ, over every run. */
export async function spentByNode(pool: pg.Pool, delta: number, nodeIds: readonly string[]): Promise<Record<string, number>> {
  const { ledgers } = await ledgersOf(pool, nodeIds);
  return Object.fromEntries([...ledgers].map(([node, events]) => [node, spentEpsilon(events, delta)]));
}

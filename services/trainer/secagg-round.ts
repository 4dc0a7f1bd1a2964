/**
 * The trainer's side of secure aggregation: one plain function per protocol stage, each
 * stateless (everything it needs is re-derived from the node's long-term secret or read
 * from PostgreSQL) and idempotent (a repeated stage writes nothing new and answers the
 * same). The plain update never leaves this function: only its masked form is stored.
 */
import type { Response } from 'express';
import type pg from 'pg';
import { HttpError } from '../http/errors.js';
import { EVENT_TYPES, encodeEvent, makeEvent, type EventMode } from '../http/cloudevents.js';
import { messageTag, type RoundId } from '../core/secagg/keys.js';
import { wordsToBytes } from '../core/secagg/masking.js';
import { advertise, advertisedPayload, deriveRoundKeys, encodeInput, maskedInput, openPeerShares, roster, shareKeys, type Advertised } from '../core/secagg/protocol.js';
import { encodeShare } from '../core/secagg/shamir.js';
import * as db from '../store/secagg.js';
import { getRound } from '../store/model-store.js';
import type { Logger } from '../shared/log.js';
import type { TrainRequest } from './train-request.js';
import type { SecaggRequest } from './secagg-request.js';

export interface SecaggDeps {
  pool: pg.Pool;
  nodeId: string;
  invokeSecret?: string;
  nodeSecret?: Buffer;
  sampleCount: number;
}

/** What a stage answers: the id of the row it stored (the aggregator reads the rest from the store). */
export interface StageResult {
  stage: SecaggRequest['stage'];
  id: number;
  created: boolean;
}

const refuse = (code: string, message: string) => new HttpError(422, code, message);

function secrets(deps: SecaggDeps): { invokeSecret: string; nodeSecret: Buffer } {
  if (!deps.invokeSecret) throw refuse('secagg_unauthenticated', 'secure aggregation needs the invocation secret to authenticate keys and masked inputs; this trainer runs --insecure');
  if (!deps.nodeSecret) throw refuse('secagg_no_node_secret', `node ${deps.nodeId} has no long-term secret (set EDGEFL_NODE_SECRET)`);
  return { invokeSecret: deps.invokeSecret, nodeSecret: deps.nodeSecret };
}

/** The advertised keys of `ids`, each checked against its tag; a missing or forged one is refused. */
export async function verifiedKeys(pool: pg.Pool, invokeSecret: string, round: RoundId, ids: readonly string[]): Promise<Advertised[]> {
  const rows = new Map((await db.listKeys(pool, round, ids)).map((r) => [r.nodeId, r]));
  return roster(ids).map((id) => {
    const r = rows.get(id);
    if (!r) throw refuse('secagg_missing_keys', `node ${id} advertised no keys for round ${round.round}`);
    const a: Advertised = { nodeId: id, cPublic: r.cPublic, sPublic: r.sPublic, selfSeedCommitment: r.seedCommitment };
    if (messageTag(invokeSecret, 'keys', round, id, advertisedPayload(a)) !== r.tag) throw refuse('secagg_forged_keys', `the keys stored for node ${id} fail authentication: they were not written by that node`);
    return a;
  });
}

/** The round attempt a stage is for; a stage of an attempt the round has moved past is refused (its keys are not reused). */
async function currentAttempt(pool: pg.Pool, request: TrainRequest & { secagg: SecaggRequest }): Promise<RoundId> {
  const row = await getRound(pool, request.runId, request.round);
  if (row && row.attempt !== request.secagg.attempt) throw new HttpError(409, 'secagg_stale_attempt', `round ${request.round} is at attempt ${row.attempt}, not ${request.secagg.attempt}`);
  return { runId: request.runId, round: request.round, attempt: request.secagg.attempt };
}

/**
 * The stages that do not train (advertise, share, unmask), and a mask stage already done
 * (its stored input is the answer). Undefined: train, then storeMaskedInput.
 */
export async function runSecaggStage(deps: SecaggDeps, request: TrainRequest & { secagg: SecaggRequest }, log: Logger): Promise<StageResult | undefined> {
  const s = request.secagg;
  const round = await currentAttempt(deps.pool, request);
  const { invokeSecret, nodeSecret } = secrets(deps);
  const keys = deriveRoundKeys(nodeSecret, round, deps.nodeId);
  if (s.stage === 'advertise') {
    const a = advertise(keys, deps.nodeId);
    const id = await db.insertKeys(deps.pool, round, { ...a, seedCommitment: a.selfSeedCommitment, tag: messageTag(invokeSecret, 'keys', round, deps.nodeId, advertisedPayload(a)) });
    log.info('secagg keys advertised', { stage: s.stage });
    return { stage: s.stage, id, created: true };
  }
  if (!s.roster.includes(deps.nodeId)) throw refuse('secagg_not_in_roster', `node ${deps.nodeId} is not in this round's roster`);
  if (s.stage === 'share') {
    if (s.roster.length < s.threshold) throw refuse('secagg_below_threshold', `${s.roster.length} nodes cannot share with threshold ${s.threshold}`);
    const u1 = await verifiedKeys(deps.pool, invokeSecret, round, s.roster);
    const id = await db.insertShares(deps.pool, round, deps.nodeId, shareKeys(keys, round, deps.nodeId, u1, s.threshold));
    log.info('secagg shares sealed', { stage: s.stage, recipients: u1.length });
    return { stage: s.stage, id, created: true };
  }
  if (s.stage === 'mask') {
    const done = (await db.maskedIds(deps.pool, round, [deps.nodeId])).get(deps.nodeId);
    return done === undefined ? undefined : { stage: s.stage, id: done, created: false };
  }
  return unmask(deps, request, round, keys, invokeSecret, log);
}

async function unmask(deps: SecaggDeps, request: TrainRequest & { secagg: SecaggRequest }, round: RoundId, keys: ReturnType<typeof deriveRoundKeys>, invokeSecret: string, log: Logger): Promise<StageResult> {
  const s = request.secagg;
  const survivors = roster(s.survivors);
  if (!survivors.includes(deps.nodeId)) throw refuse('secagg_not_a_survivor', `node ${deps.nodeId} is not among the survivors it is asked to unmask for`);
  if (survivors.length < s.threshold) throw refuse('secagg_below_threshold', `only ${survivors.length} masked inputs; revealing shares for fewer than ${s.threshold} could expose a single update`);
  if (survivors.some((id) => !s.roster.includes(id))) throw refuse('secagg_bad_survivors', 'a survivor is not in the roster');
  const [previous] = await db.listUnmask(deps.pool, round, [deps.nodeId]);
  if (previous) {
    // Never reveal a second kind of share for the same node: that would unmask its input.
    if (previous.survivors.join() !== survivors.join()) throw new HttpError(409, 'secagg_unmask_conflict', `node ${deps.nodeId} already answered unmask for survivors ${previous.survivors.join(', ')}`);
    return { stage: 'unmask', id: previous.id, created: false };
  }
  // A node said to have dropped must really have no masked input here: otherwise revealing its mask key would expose that input.
  const masked = await db.maskedIds(deps.pool, round, s.roster);
  const claimedDropped = s.roster.filter((id) => !survivors.includes(id));
  const notDropped = claimedDropped.find((id) => masked.has(id));
  if (notDropped) throw new HttpError(409, 'secagg_not_dropped', `node ${notDropped} stored a masked input; refusing to reveal its mask key`);
  const u2 = await verifiedKeys(deps.pool, invokeSecret, round, s.roster);
  const sealed = await db.sharesFor(deps.pool, round, deps.nodeId);
  const shares: Record<string, string> = {};
  for (const v of u2) {
    const box = sealed.get(v.nodeId);
    if (!box) throw refuse('secagg_missing_share', `node ${v.nodeId} sealed no share for ${deps.nodeId}`);
    let opened: ReturnType<typeof openPeerShares>;
    try {
      opened = openPeerShares(keys, round, deps.nodeId, v, box);
    } catch {
      throw refuse('secagg_forged_share', `the share ${v.nodeId} sealed for ${deps.nodeId} fails authentication: it was altered or forged`);
    }
    shares[v.nodeId] = encodeShare(survivors.includes(v.nodeId) ? opened.b : opened.s).toString('base64');
  }
  const row = await db.insertUnmask(deps.pool, round, { nodeId: deps.nodeId, survivors, shares });
  log.info('secagg shares revealed', { stage: 'unmask', survivors: survivors.length, dropped: claimedDropped.length });
  return { stage: 'unmask', id: row.id, created: true };
}

/** L2-clips `delta` to `clip` in place (client-level DP bounds each node's contribution before it is masked). */
function clipL2(delta: Float64Array, clip: number): void {
  let sq = 0;
  for (const v of delta) sq += v * v;
  const norm = Math.sqrt(sq);
  if (norm > clip) for (let i = 0; i < delta.length; i++) delta[i]! *= clip / norm;
}

/**
 * The mask stage after training: x = quantize(r·(trained − global)) ‖ samples, masked with
 * the self-mask and the pairwise masks with U2, tagged and stored. The sample count goes
 * only into the masked vector; the reply carries none.
 */
export async function storeMaskedInput(
  deps: SecaggDeps,
  request: TrainRequest & { secagg: SecaggRequest },
  global: Float32Array,
  trained: Float32Array,
  metrics: Record<string, unknown>,
  durationMs: number,
) {
  const s = request.secagg;
  const round = await currentAttempt(deps.pool, request);
  const { invokeSecret, nodeSecret } = secrets(deps);
  const delta = Float64Array.from(trained, (w, i) => w - global[i]!);
  if (s.dpClip !== null) clipL2(delta, s.dpClip);
  const samples = s.dpClip !== null ? s.maxWeight : deps.sampleCount;
  const x = encodeInput(delta, samples, s.maxWeight, { clipRange: s.clipRange, bits: s.bits });
  const u2 = await verifiedKeys(deps.pool, invokeSecret, round, s.roster);
  const bytes = wordsToBytes(maskedInput(x, deriveRoundKeys(nodeSecret, round, deps.nodeId), round, deps.nodeId, u2));
  const { samples: _hidden, ...shown } = metrics;
  const { row, created } = await db.insertMasked(deps.pool, round, {
    nodeId: deps.nodeId,
    baseVersion: request.modelVersion,
    masked: bytes,
    tag: messageTag(invokeSecret, 'masked', round, deps.nodeId, bytes),
    metrics: shown,
    durationMs,
  });
  // Shaped like a stored update for the reply; no checksum of anything plain, no sample count.
  return { id: row.id, runId: request.runId, round: request.round, nodeId: deps.nodeId, baseVersion: row.baseVersion, checksum: '', sampleCount: 0, metrics: row.metrics, durationMs, createdAt: row.createdAt, created };
}

/** The reply to a non-training stage: 200 with an update-ready event naming the stored row. */
export function sendStageReply(res: Response, source: string, request: TrainRequest, result: StageResult, mode: EventMode): void {
  const out = encodeEvent(makeEvent(EVENT_TYPES.updateReady, source, { updateId: result.id, runId: request.runId, round: request.round, secaggStage: result.stage, created: result.created }), mode);
  res.status(200).set(out.headers).send(out.body);
}

/**
 * One secure-aggregation round, run by the aggregator: advertise keys → share keys →
 * masked input (the training) → unmask, each stage an invocation of the nodes still in
 * the protocol, everything exchanged through PostgreSQL. The aggregator ends up with the
 * sum of the survivors' weighted updates and never with any one of them.
 */
import { messageTag, type RoundId } from '../../services/core/secagg/keys.js';
import { bytesToWords } from '../../services/core/secagg/masking.js';
import { advertisedPayload, decodeSum, roster, unmaskSum, UnmaskError, type Advertised } from '../../services/core/secagg/protocol.js';
import { decodeShare, type Share } from '../../services/core/secagg/shamir.js';
import * as db from '../../services/store/secagg.js';
import * as store from '../../services/store/model-store.js';
import type { InvokeOutcome } from '../invoke.js';
import type { FitInstruction, OwnRound, OwnRoundResult } from '../strategies.js';
import type { NodeRoundResult } from '../round/types.js';
import type { SecaggRequest } from '../../services/trainer/secagg-request.js';
import { invokeStage } from './stages.js';
import { roundThreshold, type SecaggConfig } from './config.js';

/** How the recovered mean becomes the next model: FedAvg's weighted mean, or client-level DP's noised sum. */
export type Release = (global: Float32Array, sum: { weightedDeltaSum: Float64Array; weightSum: number; contributors: number }, chosen: number) => Float32Array;

/** Seconds a light stage waits for stragglers once it has enough answers. */
const STAGE_GRACE_MS = 5000;

class RoundFailure extends Error {}

export async function runSecureRound(r: OwnRound, settings: SecaggConfig, dpClip: number | null, release: Release): Promise<OwnRoundResult | undefined> {
  const { ctx, runId, plan, global } = r;
  const at: RoundId = { runId, round: plan.round, attempt: (await store.getRound(ctx.pool, runId, plan.round))?.attempt ?? 1 };
  const secret = ctx.invoke.secret;
  const byNode = new Map(plan.instructions.map((i) => [i.target.nodeId, i]));
  const chosen = roster(byNode.keys());
  const t = roundThreshold(settings, chosen.length);
  const nodes = new Map<string, NodeRoundResult>(chosen.map((nodeId) => [nodeId, { nodeId, status: 'failed', reason: 'did not take part' }]));
  const params = (stage: SecaggRequest['stage'], extra: Partial<SecaggRequest> = {}) => ({ stage, attempt: at.attempt, threshold: t, clipRange: settings.clipRange, bits: settings.bits, maxWeight: settings.maxWeight, dpClip, ...extra });
  const targets = (ids: readonly string[]) => ids.map((id) => byNode.get(id)!.target);
  const noteFailures = (stage: string, outcomes: Map<string, InvokeOutcome>) => {
    for (const [id, o] of outcomes) if (!o.ok) Object.assign(nodes.get(id)!, { status: o.reason === 'deadline' ? 'late' : 'failed', reason: `${stage}: ${o.detail}`, attempts: o.attempts });
  };
  const fail = (why: string, accepted = 0): OwnRoundResult => ({ nodes: [...nodes.values()], failure: `secure aggregation: ${why}`, accepted });
  if (!secret) return fail('the aggregator has no invocation secret to authenticate the nodes (--insecure)');
  if (chosen.length < t) return fail(`${chosen.length} nodes chosen, fewer than the threshold ${t}`);

  const timings: Record<string, number> = {};
  let mark = Date.now();
  const lap = (stage: string) => {
    timings[`${stage}_ms`] = Date.now() - mark;
    mark = Date.now();
  };
  try {
    // 0: advertise keys. U1: the nodes whose keys are stored and authentic.
    const advertised = await invokeStage(r, { stage: 'advertise', targets: targets(chosen), payload: () => ({ secagg: params('advertise') }), stored: async (id) => (await db.listKeys(ctx.pool, at, [id]))[0]?.id, enough: t, graceMs: STAGE_GRACE_MS });
    if (r.signal.aborted) return undefined;
    noteFailures('advertise', advertised);
    lap('advertise');
    const u1 = authenticKeys(await db.listKeys(ctx.pool, at, chosen), secret, at);
    require(u1.length, t, 'advertised keys');

    // 1: share keys. U2: the nodes that sealed shares for every member of U1.
    const u1Ids = u1.map((a) => a.nodeId);
    const shared = await invokeStage(r, { stage: 'share', targets: targets(u1Ids), payload: () => ({ secagg: params('share', { roster: u1Ids }) }), stored: async (id) => ((await db.shareRecipients(ctx.pool, at)).get(id)?.length === u1Ids.length ? 1 : undefined), enough: t, graceMs: STAGE_GRACE_MS });
    if (r.signal.aborted) return undefined;
    noteFailures('share keys', shared);
    lap('share');
    const recipients = await db.shareRecipients(ctx.pool, at);
    const u2 = u1.filter((a) => recipients.get(a.nodeId)?.join() === u1Ids.join());
    const u2Ids = u2.map((a) => a.nodeId);
    require(u2.length, t, 'nodes that shared their keys');

    // 2: masked input: the training itself. U3: authentic masked inputs stored by the deadline.
    const trained = await invokeStage(r, { stage: 'mask', targets: targets(u2Ids), payload: (id) => ({ ...(byNode.get(id) as FitInstruction).config, secagg: params('mask', { roster: u2Ids }) }), stored: async (id) => (await db.maskedIds(ctx.pool, at, [id])).get(id) });
    if (r.signal.aborted) return undefined;
    noteFailures('masked input', trained);
    lap('mask');
    const masked = (await db.listMasked(ctx.pool, at, u2Ids)).filter((m) => m.baseVersion === plan.baseVersion && Date.parse(m.createdAt) <= plan.deadline.getTime() + 1000);
    for (const m of masked) {
      if (messageTag(secret, 'masked', at, m.nodeId, m.masked) !== m.tag) throw new RoundFailure(`the masked input stored for ${m.nodeId} fails authentication: it was altered or forged; nothing was unmasked`);
      Object.assign(nodes.get(m.nodeId)!, { status: 'ok', reason: undefined, loss: m.metrics.loss, accuracy: m.metrics.accuracy, durationMs: m.durationMs, samplesPerSecond: m.metrics.samplesPerSecond });
    }
    const u3Ids = roster(masked.map((m) => m.nodeId));
    require(u3Ids.length, t, 'masked inputs');

    // 3: unmask. Any t survivors' answers rebuild every secret needed.
    const unmasked = await invokeStage(r, { stage: 'unmask', targets: targets(u3Ids), payload: () => ({ secagg: params('unmask', { roster: u2Ids, survivors: u3Ids }) }), stored: async (id) => (await db.listUnmask(ctx.pool, at, [id]))[0]?.id, enough: t, graceMs: STAGE_GRACE_MS });
    if (r.signal.aborted) return undefined;
    // A survivor that refuses (rather than vanishes) saw a forged share or an inconsistent request: never go on around it.
    const refused = [...unmasked.values()].find((o) => !o.ok && o.reason === 'rejected');
    if (refused && !refused.ok) throw new RoundFailure(`a node refused to unmask: ${refused.detail}`);
    const answers = (await db.listUnmask(ctx.pool, at, u3Ids)).filter((a) => a.survivors.join() === u3Ids.join());
    require(answers.length, t, 'unmask answers');
    lap('unmask');
    const aggStart = Date.now();
    const revealed = new Map<string, Share[]>();
    for (const a of answers) for (const [owner, share] of Object.entries(a.shares)) revealed.set(owner, [...(revealed.get(owner) ?? []), decodeShare(Buffer.from(share, 'base64'))]);
    const sum = unmaskSum({ round: at, threshold: t, u2, masked: new Map(masked.map((m) => [m.nodeId, bytesToWords(m.masked)])), revealed });
    const decoded = decodeSum(sum, u3Ids.length, settings.maxWeight, settings);
    const next = release(global, { weightedDeltaSum: decoded.weightedDeltaSum, weightSum: decoded.weightSum, contributors: u3Ids.length }, chosen.length);
    ctx.log.info('secure aggregation unmasked the sum', { run_id: runId, round: plan.round, threshold: t, advertised: u1.length, shared: u2.length, masked: u3Ids.length, answered: answers.length, ...timings, aggregation_ms: Date.now() - aggStart });
    return { next, nodes: [...nodes.values()], aggregationMs: Date.now() - aggStart };
  } catch (e) {
    if (e instanceof RoundFailure || e instanceof UnmaskError) return fail(e.message, 0);
    throw e;
  }

  function require(have: number, need: number, what: string): void {
    if (have < need) throw new RoundFailure(`only ${have} ${what} of ${chosen.length} nodes; the threshold is ${need}, so the round fails without unmasking anything`);
  }
}

/** The advertised keys whose tags verify; a forged key row fails the round (someone wrote keys in a node's name). */
function authenticKeys(rows: readonly db.KeyRow[], secret: string, at: RoundId): Advertised[] {
  return rows.map((r) => {
    const a: Advertised = { nodeId: r.nodeId, cPublic: r.cPublic, sPublic: r.sPublic, selfSeedCommitment: r.seedCommitment };
    if (messageTag(secret, 'keys', at, r.nodeId, advertisedPayload(a)) !== r.tag) throw new RoundFailure(`the keys stored for ${r.nodeId} fail authentication: they were not written by that node`);
    return a;
  });
}

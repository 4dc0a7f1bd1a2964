import { describe, expect, it } from 'vitest';
import { decodeStoredWeights, encodeStoredWeights, encodeWeights, sha256Hex } from '../services/core/codec.js';
import type { TensorSpec } from '../services/core/model.js';
import { DEFAULT_RUN, parseRunConfig, unreachableQuorum } from '../aggregator/run-config.js';
import { createStrategy, type FitInstruction } from '../aggregator/strategies.js';
import { planRound, type PlanInput } from '../aggregator/round/plan.js';
import { applyVerdict, nodeResults, screenUpdate, shortfall, updatesInTime, type ScreenPolicy } from '../aggregator/round/screen.js';
import { decideNext, decidePromotion, type RoundRecord } from '../aggregator/round/decide.js';
import type { InvokeOutcome } from '../aggregator/invoke.js';

/** The round's pure steps, without PostgreSQL or trainers. */
const spec: TensorSpec[] = [{ name: 'w', shape: [2] }];
const f32 = (...v: number[]) => Float32Array.from(v);
const trainers = Array.from({ length: 6 }, (_, i) => ({ nodeId: `node-${i}`, url: `http://127.0.0.1:${9000 + i}` }));
const ids = (xs: FitInstruction[]) => xs.map((x) => x.target.nodeId);

describe('plan: configure the round', () => {
  const base = (over: Partial<PlanInput> = {}): PlanInput => ({
    round: 4,
    strategy: createStrategy('fedavg', { ...DEFAULT_RUN, fraction: 0.5, seed: 3 }),
    trainers,
    config: { nodes: null, minQuorum: 2, roundTimeoutS: 10 },
    latestVersion: 17,
    now: 1_000_000,
    ...over,
  });

  it('a new round: sampled nodes with the run’s training settings, latest base, fresh deadline, quorum capped at the chosen nodes', () => {
    const plan = planRound(base());
    expect(plan.instructions).toHaveLength(3);
    expect(plan.instructions[0]!.config).toMatchObject({ epochs: DEFAULT_RUN.epochs, batchSize: DEFAULT_RUN.batchSize, proximalMu: 0, seed: 3 });
    expect(plan).toMatchObject({ round: 4, baseVersion: 17, quorum: 2, required: 2 });
    expect(plan.deadline.getTime()).toBe(1_000_000 + 10_000);
    expect(planRound(base({ config: { nodes: null, minQuorum: 9, roundTimeoutS: 10 } })).quorum).toBe(3);
    expect(ids(planRound(base({ config: { nodes: ['node-1', 'node-4'], minQuorum: 1, roundTimeoutS: 10 } })).instructions)).toEqual(['node-1']);
  });

  it('a robust strategy requires its minimum whatever the quorum', () => {
    const plan = planRound(base({ strategy: createStrategy('median', { ...DEFAULT_RUN, fraction: 1 }), config: { nodes: ['node-0', 'node-1'], minQuorum: 1, roundTimeoutS: 10 } }));
    expect(plan).toMatchObject({ quorum: 1, required: 3 });
  });

  it('a re-entered round keeps its base version, its nodes and its deadline while that lasts', () => {
    const existing = { status: 'running' as const, baseVersion: 12, selected: ['node-0', 'node-5'], deadline: new Date(1_005_000).toISOString() };
    const plan = planRound(base({ existing }));
    expect(ids(plan.instructions)).toEqual(['node-0', 'node-5']);
    expect(plan.baseVersion).toBe(12);
    expect(plan.deadline.getTime()).toBe(1_005_000);
    expect(planRound(base({ existing, now: 2_000_000 })).deadline.getTime()).toBe(2_010_000);
    // a failed round is retried afresh: latest base, new sample
    expect(planRound(base({ existing: { ...existing, status: 'failed' } })).baseVersion).toBe(17);
  });
});

describe('screen: which updates count', () => {
  const global = f32(0, 0);
  const policy: ScreenPolicy = { spec, maxUpdateNorm: null, normPolicy: 'clip' };
  const stored = (flat: Float32Array) => encodeStoredWeights(spec, flat);
  const update = (flat = f32(3, 4), over = {}) => ({ nodeId: 'n', sampleCount: 10, ...stored(flat), ...over });

  it('accepts an intact update and measures its step', () => {
    const v = screenUpdate(update(), global, policy);
    expect(v).toMatchObject({ accepted: true, norm: 5, clipped: false });
  });

  it('refuses missing bytes, bad sample counts, a wrong stored checksum, a foreign manifest and NaN', () => {
    const reason = (u: Parameters<typeof screenUpdate>[0]) => {
      const v = screenUpdate(u, global, policy);
      return v.accepted ? 'accepted' : v.reason;
    };
    expect(reason(update(undefined, { bytes: undefined }))).toMatch(/missing/);
    expect(reason(update(undefined, { sampleCount: 0 }))).toMatch(/invalid sample count 0/);
    expect(reason(update(undefined, { sampleCount: 1.5 }))).toMatch(/invalid sample count/);
    expect(reason(update(undefined, { checksum: '0'.repeat(64) }))).toMatch(/checksum_mismatch/);
    const foreign = encodeWeights([{ name: 'other', shape: [2] }], f32(1, 1));
    expect(reason(update(undefined, { bytes: foreign, checksum: sha256Hex(foreign) }))).toMatch(/shape_mismatch/);
    const nan = stored(f32(1, 1)).bytes;
    nan.writeFloatLE(NaN, nan.length - 32 - 4);
    expect(reason(update(undefined, { bytes: nan, checksum: sha256Hex(nan) }))).toMatch(/checksum_mismatch|non_finite/);
  });

  it('a step beyond maxUpdateNorm is refused (reject) or scaled to the bound (clip)', () => {
    const rejected = screenUpdate(update(), global, { ...policy, maxUpdateNorm: 1, normPolicy: 'reject' });
    expect(rejected).toMatchObject({ accepted: false, norm: 5, reason: 'update norm 5.00 exceeds 1' });
    const clipped = screenUpdate(update(), global, { ...policy, maxUpdateNorm: 1 });
    expect(clipped.accepted && Array.from(clipped.weights).map((x) => +x.toFixed(5))).toEqual([0.6, 0.8]);
    const node = { nodeId: 'n', status: 'ok' as const };
    applyVerdict(node, clipped);
    expect(node).toMatchObject({ clipped: true, updateNorm: 5 });
    applyVerdict(node, rejected);
    expect(node).toMatchObject({ status: 'rejected_update', reason: 'update norm 5.00 exceeds 1' });
  });

  it('counts updates on the round’s base from chosen nodes by the deadline; reports the others by what the trainer said', () => {
    const row = (nodeId: string, baseVersion: number, at: number) => ({ nodeId, baseVersion, createdAt: new Date(at).toISOString(), sampleCount: 5, durationMs: 7, metrics: { loss: 0.1, accuracy: 0.9 } });
    const rows = [row('a', 3, 1000), row('b', 2, 1000), row('c', 3, 1000), row('d', 3, 5000)];
    const kept = updatesInTime(rows, { baseVersion: 3, selected: ['a', 'b', 'd', 'e'], deadline: new Date(2000) });
    expect(kept.map((u) => u.nodeId)).toEqual(['a']);
    const outcomes = new Map<string, InvokeOutcome>([
      ['d', { ok: false, reason: 'deadline', detail: 'deadline passed', attempts: 3, ms: 1 }],
      ['e', { ok: false, reason: 'rejected', status: 400, detail: 'HTTP 400: no', attempts: 1, ms: 1 }],
    ]);
    expect(nodeResults(['a', 'd', 'e', 'f'], kept, outcomes)).toEqual([
      { nodeId: 'a', status: 'ok', samples: 5, loss: 0.1, accuracy: 0.9, durationMs: 7, samplesPerSecond: undefined, attempts: undefined },
      { nodeId: 'd', status: 'late', reason: 'deadline passed', attempts: 3 },
      { nodeId: 'e', status: 'failed', reason: 'HTTP 400: no', attempts: 1 },
      { nodeId: 'f', status: 'failed', reason: 'no update stored', attempts: undefined },
    ]);
  });

  it('says why a round cannot be aggregated: quorum, or the robust minimum', () => {
    const median = { name: 'median', minUpdates: 3 };
    expect(shortfall(2, 3, 2, 2, { name: 'fedavg', minUpdates: 1 })).toBeUndefined();
    expect(shortfall(1, 3, 2, 2, { name: 'fedavg', minUpdates: 1 })).toBe('only 1 of 3 nodes delivered; quorum is 2');
    expect(shortfall(2, 2, 3, 2, median)).toBe('only 2 of 2 nodes delivered; median needs at least 3 accepted updates to stay robust');
    expect(shortfall(3, 3, 3, 2, median)).toBeUndefined();
  });
});

describe('decide: what the run does next, from its rounds table', () => {
  const rules = { rounds: 5, targetAccuracy: 0.9, patience: 2, maxRoundAttempts: 3 };
  const done = (round: number, accuracy: number): RoundRecord => ({ round, status: 'completed', attempt: 1, accuracy });

  it('starts, continues, re-enters an open round and retries a failed one', () => {
    expect(decideNext([], rules)).toEqual({ finish: false, round: 1 });
    expect(decideNext([done(1, 0.5)], rules)).toEqual({ finish: false, round: 2 });
    expect(decideNext([done(1, 0.5), { round: 2, status: 'running', attempt: 1, accuracy: null }], rules)).toEqual({ finish: false, round: 2 });
    expect(decideNext([done(1, 0.5), { round: 2, status: 'failed', attempt: 2, accuracy: null }], rules)).toEqual({ finish: false, round: 2 });
  });

  it('fails the run once a round has failed maxRoundAttempts times, attempts counted from the table (a resume does not reset them)', () => {
    const failed: RoundRecord = { round: 2, status: 'failed', attempt: 3, accuracy: null, reason: 'only 1 of 3 nodes delivered; quorum is 2' };
    expect(decideNext([done(1, 0.5), failed], rules)).toEqual({ finish: true, status: 'failed', reason: 'round 2 failed 3 times: only 1 of 3 nodes delivered; quorum is 2' });
  });

  it('completes at the target, after `patience` rounds without improvement, or after the last round', () => {
    expect(decideNext([done(1, 0.5), done(2, 0.95)], rules)).toEqual({ finish: true, status: 'completed', reason: 'target accuracy 0.9 reached in round 2' });
    expect(decideNext([done(1, 0.6), done(2, 0.5), done(3, 0.6)], rules)).toEqual({ finish: true, status: 'completed', reason: 'no improvement for 2 rounds' });
    expect(decideNext([done(1, 0.6), done(2, 0.5), done(3, 0.7)], rules)).toEqual({ finish: false, round: 4 });
    expect(decideNext([1, 2, 3, 4, 5].map((r) => done(r, r / 10)), rules)).toEqual({ finish: true, status: 'completed', reason: 'reached the maximum of 5 rounds' });
  });
});

describe('decidePromotion', () => {
  const p = { policy: 'best' as const, minImprovement: 0, candidateAccuracy: 0.9, promotedAccuracy: 0.8 as number | undefined, round: 3 };
  it('best: strictly better, or better by minImprovement; the first candidate when nothing is promoted', () => {
    expect(decidePromotion(p)).toBe(true);
    expect(decidePromotion({ ...p, candidateAccuracy: 0.8 })).toBe(false);
    expect(decidePromotion({ ...p, candidateAccuracy: 0.7 })).toBe(false);
    expect(decidePromotion({ ...p, minImprovement: 0.1, candidateAccuracy: 0.9 })).toBe(true);
    expect(decidePromotion({ ...p, minImprovement: 0.1, candidateAccuracy: 0.89 })).toBe(false);
    expect(decidePromotion({ ...p, promotedAccuracy: undefined, candidateAccuracy: 0.1 })).toBe(true);
  });
  it('latest always, manual never, and round 0 never by any policy', () => {
    expect(decidePromotion({ ...p, policy: 'latest', candidateAccuracy: 0.1 })).toBe(true);
    expect(decidePromotion({ ...p, policy: 'manual', candidateAccuracy: 0.99 })).toBe(false);
    for (const policy of ['best', 'latest', 'manual'] as const) expect(decidePromotion({ ...p, policy, round: 0, promotedAccuracy: undefined })).toBe(false);
  });
});

describe('run config: one schema, one set of defaults', () => {
  const refused = (body: unknown, defaults = {}) => {
    try {
      parseRunConfig(body, defaults);
    } catch (e) {
      return { status: (e as { status: number }).status, code: (e as { code: string }).code, message: (e as Error).message };
    }
    return undefined;
  };

  it('defaults come from the schema (trimFraction 0.34 everywhere), promotion included; null means default', () => {
    expect(parseRunConfig({})).toEqual(DEFAULT_RUN);
    expect(DEFAULT_RUN).toMatchObject({ trimFraction: 0.34, promote: 'best', minImprovement: 0, minQuorum: 1, rounds: 20 });
    expect(createStrategy('trimmed-mean', DEFAULT_RUN).minUpdates).toBe(3);
    expect(parseRunConfig({ rounds: null, promote: 'manual', minImprovement: 0.01 })).toMatchObject({ rounds: 20, promote: 'manual', minImprovement: 0.01 });
  });

  it('a bad value is a one-line 400 naming the field', () => {
    for (const [body, field] of [[{ rounds: 0 }, 'rounds'], [{ strategy: 'krum' }, 'strategy'], [{ promote: 'sometimes' }, 'promote'], [{ minImprovement: -0.1 }, 'minImprovement'], [{ nodes: [1] }, 'nodes.0']] as const) {
      const err = refused(body)!;
      expect(err, JSON.stringify(body)).toMatchObject({ status: 400, code: 'invalid_field' });
      expect(err.message.startsWith(`'${field}': `), err.message).toBe(true);
      expect(err.message).not.toMatch(/\n/);
    }
    expect(refused({ bogus: 1, other: 2 })).toEqual({ status: 400, code: 'unknown_field', message: 'unknown field(s): bogus, other' });
  });

  it('a robust strategy raises a defaulted quorum to what it needs and refuses an explicit one below it', () => {
    expect(parseRunConfig({ strategy: 'median' }, { minQuorum: 2 }).minQuorum).toBe(3);
    expect(parseRunConfig({ strategy: 'trimmed-mean', trimFraction: 0.2 }).minQuorum).toBe(5);
    expect(parseRunConfig({ strategy: 'fedavg' }, { minQuorum: 2 }).minQuorum).toBe(2);
    expect(refused({ strategy: 'median', minQuorum: 2 })).toMatchObject({ status: 400, code: 'invalid_field', message: expect.stringMatching(/^'minQuorum' must be >= 3 for median/) });
    expect(refused({ strategy: 'trimmed-mean', trimFraction: 0 })).toMatchObject({ status: 400, message: expect.stringMatching(/'trimFraction' must be > 0/) });
  });
});

describe('run config against the nodes there are', () => {
  it('refuses a quorum above the nodes, and a robust strategy whose rounds choose fewer nodes than it needs', () => {
    expect(unreachableQuorum(parseRunConfig({ minQuorum: 4 }), 3)).toBe('minQuorum 4 exceeds the 3 available nodes');
    expect(unreachableQuorum(parseRunConfig({ strategy: 'median', fraction: 0.5 }), 4)).toBe('median needs 3 updates per round, but fraction 0.5 of 4 nodes chooses 2');
    expect(unreachableQuorum(parseRunConfig({ strategy: 'median', fraction: 0.5 }), 6)).toBeUndefined();
    expect(unreachableQuorum(parseRunConfig({ fraction: 0.1 }), 3)).toBeUndefined();
  });
});

describe('stored weights: one helper writes them, decodeStoredWeights reads them back', () => {
  it('bytes, their checksum and the manifest agree', () => {
    const w = encodeStoredWeights(spec, f32(1.5, -2));
    expect(w.checksum).toBe(sha256Hex(w.bytes));
    expect(w.manifest).toEqual({ tensors: spec });
    expect(Array.from(decodeStoredWeights(w.bytes, w.checksum, spec).flat)).toEqual([1.5, -2]);
  });
});

import { describe, expect, it } from 'vitest';
import { cooldownRounds, nodeHistories, selectByReliability, tiers, type RoundHistoryRow } from '../aggregator/fedlesscan-strategy.js';
import { parseRunConfig } from '../aggregator/run-config.js';
import { createStrategy } from '../aggregator/strategies.js';

type Outcome = 'ok' | 'late' | 'failed' | 'rejected_update';
/** A finished round: node → (outcome, training ms). */
function round(n: number, nodes: Record<string, [Outcome, number?]>, status: RoundHistoryRow['status'] = 'completed'): RoundHistoryRow {
  return {
    round: n,
    status,
    selected: Object.keys(nodes),
    metrics: { nodes: Object.entries(nodes).map(([nodeId, [s, durationMs]]) => ({ nodeId, status: s, durationMs })) },
  };
}

const NODES = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];

describe('FedLesScan history (pure)', () => {
  it('counts invitations, misses, the miss streak and delivered durations per node; a running round has no outcome yet', () => {
    const h = nodeHistories([
      round(1, { n0: ['ok', 100], n1: ['late'] }),
      round(2, { n0: ['ok', 200], n1: ['failed'], n2: ['rejected_update', 50] }),
      round(3, { n1: ['ok', 900] }, 'running'),
    ]);
    expect(h.get('n0')).toEqual({ invited: 2, missed: 0, missStreak: 0, lastInvited: 2, lastMissed: 0, durations: [100, 200] });
    expect(h.get('n1')).toEqual({ invited: 2, missed: 2, missStreak: 2, lastInvited: 2, lastMissed: 2, durations: [] });
    expect(h.get('n2')).toMatchObject({ missed: 0, durations: [50] });
    expect(h.has('n3')).toBe(false);
  });

  it('cools a node down for 1, 2, 4 … rounds after consecutive misses', () => {
    expect([1, 2, 3, 4, 9].map(cooldownRounds)).toEqual([1, 2, 4, 8, 16]);
  });
});

describe('FedLesScan selection (pure)', () => {
  // Rounds 1–2 asked everyone: n5 is three times slower than the rest, n4 missed round 2.
  const everyone = (r: number, n4: Outcome) => round(r, { n0: ['ok', 100], n1: ['ok', 110], n2: ['ok', 120], n3: ['ok', 105], n4: [n4, 100], n5: ['ok', 330] });
  const history = nodeHistories([everyone(1, 'ok'), everyone(2, 'late')]);

  it('puts never-asked nodes first so every shard is represented', () => {
    const h = nodeHistories([round(1, { n0: ['ok', 100], n1: ['ok', 100], n2: ['ok', 100] })]);
    expect(selectByReliability(NODES, h, 2, 3, 1)).toEqual(['n3', 'n4', 'n5']);
  });

  it('prefers the fast, reliable cluster: the slow node and the one that just missed are left out', () => {
    const t = tiers(NODES, history, 3, 4);
    expect(Object.fromEntries(t)).toEqual({ n0: 'fast', n1: 'fast', n2: 'fast', n3: 'fast', n4: 'cooling', n5: 'slow' });
    expect(selectByReliability(NODES, history, 3, 4, 1)).toEqual(['n0', 'n1', 'n2', 'n3']);
    // Short of fast nodes, the slow one comes before the cooling one.
    expect(selectByReliability(NODES, history, 3, 5, 1)).toEqual(['n0', 'n1', 'n2', 'n3', 'n5']);
  });

  it('lets a straggler back once its cooldown is over, and never starves a node for long', () => {
    // Round 3 chose n0–n3; in round 4 the cooldown of n4 (one miss: one round) is over.
    const h = nodeHistories([everyone(1, 'ok'), everyone(2, 'late'), round(3, { n0: ['ok', 100], n1: ['ok', 100], n2: ['ok', 100], n3: ['ok', 100] })]);
    expect(tiers(NODES, h, 4, 4).get('n4')).toBe('fast');
    // Least recently asked first among the fast: n4 (round 2) before n0–n3 (round 3).
    expect(selectByReliability(NODES, h, 4, 2, 1)).toContain('n4');
    // The slow n5, left out since round 2, is overdue after maxWait (2·⌈6/3⌉ = 4) rounds and outranks the fast ones.
    expect(selectByReliability(NODES, h, 6, 3, 1)).not.toContain('n5');
    expect(tiers(NODES, h, 7, 4).get('n5')).toBe('overdue');
    expect(selectByReliability(NODES, h, 7, 3, 1)).toContain('n5');
  });

  it('ranks a node that misses more often than it delivers with the slow ones, once its cooldown is over', () => {
    const h = nodeHistories([round(1, { n0: ['ok', 100], n1: ['late'] }), round(2, { n0: ['ok', 100], n2: ['ok', 100] }), round(4, { n0: ['ok', 100], n2: ['ok', 100] })]);
    expect(tiers(['n0', 'n1', 'n2'], h, 5, 10).get('n1')).toBe('slow');
    expect(selectByReliability(['n0', 'n1', 'n2'], h, 5, 2, 1)).toEqual(['n0', 'n2']);
  });

  it('is reproducible for a seed and returns everyone when k covers all', () => {
    const fresh = new Map();
    const a = selectByReliability(NODES, fresh, 1, 3, 9);
    expect(selectByReliability(NODES, fresh, 1, 3, 9)).toEqual(a);
    expect(a).toHaveLength(3);
    expect(selectByReliability(NODES, history, 3, 6, 1)).toEqual(NODES);
  });
});

describe('fedlesscan strategy', () => {
  it('selects from the rounds it observed, and keeps a re-entered round’s nodes', () => {
    const config = parseRunConfig({ strategy: 'fedlesscan', fraction: 0.5 });
    const strategy = createStrategy('fedlesscan', config);
    const targets = NODES.map((nodeId) => ({ nodeId, url: `http://${nodeId}` }));
    strategy.observeRounds!([round(1, { n0: ['ok', 100], n1: ['ok', 100], n2: ['late'] })]);
    const chosen = strategy.configureFit(2, targets).map((i) => i.target.nodeId);
    expect(chosen).toEqual(['n3', 'n4', 'n5']);
    expect(strategy.configureFit(2, targets, ['n0', 'n2']).map((i) => i.target.nodeId)).toEqual(['n0', 'n2']);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { chooseNodes } from '../aggregator/round/plan.js';
import { selectByReliability } from '../aggregator/fedlesscan-strategy.js';
import { FIRST_INVOCATION_ALLOWANCE, MAX_WARM_RUN, STRAGGLER_FACTOR, nextWarmRun, pickPreferringWarm, selectPreferringWarm, setWarmthSource, worthKeeping } from '../aggregator/warmth.js';
import { concurrencyOf } from '../aggregator/async/state.js';
import { warmNow } from '../aggregator/async/dispatch.js';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `node-${i}`);
const targets = (n: number) => ids(n).map((nodeId) => ({ nodeId, url: `http://x/${nodeId}` }));

afterEach(() => setWarmthSource(undefined));

describe('warm-aware sampling of a synchronous round', () => {
  it('fills up to two thirds of the places with warm nodes and draws the rest among the others', () => {
    const warm = new Set(ids(100).slice(0, 8)); // more warm nodes than places for them
    const chosen = selectPreferringWarm(targets(100), 10, warm, 7, 3).map((t) => t.nodeId);
    expect(chosen).toHaveLength(10);
    expect(chosen.filter((n) => warm.has(n))).toHaveLength(10 - Math.ceil(10 / 3));
    expect(selectPreferringWarm(targets(100), 10, warm, 7, 3).map((t) => t.nodeId)).toEqual(chosen); // seeded
  });

  it('keeps every node in the draw: over many rounds with the same warm nodes, every node is asked', () => {
    const warm = new Set(['node-0', 'node-1', 'node-2', 'node-3']);
    const asked = new Set<string>();
    for (let round = 1; round <= 200; round++) for (const t of selectPreferringWarm(targets(100), 10, warm, 5, round)) asked.add(t.nodeId);
    expect(asked.size).toBe(100);
  });

  it('is what chooseNodes does once an activator registers its warm nodes, and only then', () => {
    const config = { fraction: 0.1, seed: 11 };
    const plain = chooseNodes(targets(100), config, 2).map((t) => t.nodeId);
    const warm = new Set(ids(100).filter((n) => !plain.includes(n)).slice(0, 4));
    setWarmthSource({ warm: () => warm, capacity: 4 });
    const preferring = chooseNodes(targets(100), config, 2).map((t) => t.nodeId);
    expect(preferring).toHaveLength(10);
    expect(preferring.filter((n) => warm.has(n)).sort()).toEqual([...warm].sort());
    expect(preferring.slice(0, warm.size).sort()).toEqual([...warm].sort()); // warm first: their requests reach the activator before a cold one can evict them
    setWarmthSource(undefined);
    expect(chooseNodes(targets(100), config, 2).map((t) => t.nodeId)).toEqual(plain);
  });

  it('fedlesscan: within a tier, warm nodes come before the least recently asked', () => {
    const history = new Map(ids(20).map((n, i) => [n, { invited: 1, missed: 0, missStreak: 0, lastInvited: i % 2 ? 1 : 2, lastMissed: 0, durations: [1000] }]));
    const warm = new Set(['node-2', 'node-4', 'node-6']); // asked in round 2, later than the odd nodes
    const cold = selectByReliability(ids(20), history, 3, 5, 1);
    expect(cold.some((n) => warm.has(n))).toBe(false);
    const chosen = selectByReliability(ids(20), history, 3, 5, 1, warm);
    expect(chosen.filter((n) => warm.has(n)).sort()).toEqual([...warm].sort());
  });
});

describe('which warm trainers are worth keeping', () => {
  it('not a straggler (the last to finish are the ones still warm), nor one that has had its run', () => {
    const kept = worthKeeping([
      { nodeId: 'fast', served: 1, lastMs: 2000 },
      { nodeId: 'typical', served: 2, lastMs: 2500 },
      { nodeId: 'slow', served: 1, lastMs: 9000 }, // a 4x slower device
      { nodeId: 'had-its-run', served: MAX_WARM_RUN, lastMs: 2100 },
      { nodeId: 'starting', served: 0 },
    ]);
    expect([...kept].sort()).toEqual(['fast', 'starting', 'typical']);
  });

  it("allows a process's first invocation its warm-up, and still drops a slow device on its first", () => {
    // Warm processes take 2.0–2.4 s; a just-started one takes 1.5× that while V8 optimises.
    const warm = [
      { nodeId: 'a', served: 3, lastMs: 2000 },
      { nodeId: 'b', served: 2, lastMs: 2200 },
      { nodeId: 'c', served: 4, lastMs: 2400 },
    ];
    const justStarted = { nodeId: 'new', served: 1, lastMs: 3400 };
    expect(3400 / 2200).toBeGreaterThan(STRAGGLER_FACTOR); // judged as a warm invocation, it would be dropped
    expect(worthKeeping([...warm, justStarted]).has('new')).toBe(true);
    expect(worthKeeping([...warm, { ...justStarted, served: 2 }]).has('new')).toBe(false);
    // A 4x slower device is a straggler even on its first invocation.
    const slowFirst = { nodeId: 'slow', served: 1, lastMs: 4 * 2200 * FIRST_INVOCATION_ALLOWANCE * 0.9 };
    expect(worthKeeping([...warm, slowFirst]).has('slow')).toBe(false);
  });
});

describe('warm-aware picks of the asynchronous driver', () => {
  it('re-invokes a warm node up to MAX_WARM_RUN times in a row, then the least recently asked node', () => {
    const lastInvoked = new Map<string, number>();
    const warmRun = new Map<string, number>();
    const warm = new Set<string>();
    const picks: string[] = [];
    for (let invocation = 1; invocation <= 2 * MAX_WARM_RUN + 2; invocation++) {
      const node = pickPreferringWarm(ids(4), warm, { lastInvoked, warmRun }, 3, invocation)!;
      warmRun.set(node, nextWarmRun({ lastInvoked, warmRun }, node, warm));
      lastInvoked.set(node, invocation);
      warm.add(node); // its process stays up after it answers (one free slot at a time here)
      picks.push(node);
    }
    const first = picks[0]!;
    expect(picks.slice(0, MAX_WARM_RUN)).toEqual(Array(MAX_WARM_RUN).fill(first));
    expect(picks[MAX_WARM_RUN]).not.toBe(first); // its run is over: someone never asked comes in
    // Run after run: A, A, A, B, B, B, C, C (a never-asked node comes in each time a run ends).
    expect(new Set(picks).size).toBe(3);
  });

  it('presumes a node warm for 90 s after it came back when no activator says, and runs as many as the activator holds', () => {
    const now = 1_000_000;
    expect([...warmNow({ lastDone: new Map([['a', now - 1000], ['b', now - 91_000]]) }, now)]).toEqual(['a']);
    const s = { strategy: { async: { concurrency: null } }, candidates: targets(100) } as unknown as Parameters<typeof concurrencyOf>[0];
    expect(concurrencyOf(s)).toBe(100);
    setWarmthSource({ warm: () => new Set(['node-5']), capacity: 4 });
    expect([...warmNow({ lastDone: new Map() }, now)]).toEqual(['node-5']);
    expect(concurrencyOf(s)).toBe(4);
  });

  it('keeps a running slow device that the synchronous view drops as a straggler', () => {
    // node-1's last update took 4x the others': no place in a synchronous round, but still running.
    const slots = [{ nodeId: 'node-0', served: 2, lastMs: 1000 }, { nodeId: 'node-1', served: 2, lastMs: 4000 }, { nodeId: 'node-2', served: 2, lastMs: 1100 }];
    const running = new Set(slots.map((x) => x.nodeId));
    setWarmthSource({ warm: () => worthKeeping(slots), running: () => running, capacity: 3 });
    expect([...worthKeeping(slots)].sort()).toEqual(['node-0', 'node-2']);
    const warm = warmNow({ lastDone: new Map() }, 0);
    expect([...warm].sort()).toEqual(['node-0', 'node-1', 'node-2']);
    // node-1 is the only free node besides a never-run one: the driver re-invokes it rather than start node-3.
    const pick = pickPreferringWarm(['node-1', 'node-3'], warm, { lastInvoked: new Map([['node-1', 7]]), warmRun: new Map([['node-1', 1]]) }, 3, 8);
    expect(pick).toBe('node-1');
    // A source that only knows which nodes are worth keeping (Knative pods) serves both drivers.
    setWarmthSource({ warm: () => new Set(['node-0']) });
    expect([...warmNow({ lastDone: new Map() }, 0)]).toEqual(['node-0']);
  });
});

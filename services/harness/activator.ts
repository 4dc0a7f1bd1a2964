/**
 * Scale from zero, locally, the way Knative does it: every registered edge node has a trainer
 * URL, but its process runs only while it is used. The activator (a pool of per-node slots plus
 * the HTTP proxy in activator-proxy.ts) starts a node's trainer on its first request, holds the
 * request until the trainer is ready (Knative's activator does the same), caps concurrent
 * processes at maxActive (requests past the cap wait in a FIFO queue; an idle process is evicted
 * first), and stops a process after an idle window (edgefl up's default 90 s: Knative's 60 s
 * stable window, then its 30 s scale-to-zero grace period).
 */

export type NodeState = 'cold' | 'starting' | 'training' | 'idle' | 'failed';

/** A ready trainer process (or, in tests, anything answering HTTP). */
export interface Instance {
  url: string;
  /** The process id, where there is a process (shown in GET /activator). */
  pid?: number;
  /** Settles when the process ends, for whatever reason. */
  exited: Promise<unknown>;
  stop(): Promise<unknown>;
}

/** Starts node `node`'s trainer and resolves once it is ready to take requests. */
export type StartInstance = (node: number) => Promise<Instance>;

export interface ActivatorOptions {
  nodes: number;
  start: StartInstance;
  maxActive: number;
  /** An idle process is stopped after this long without a request (edgefl up: 90 s, as Knative scales a revision to zero). */
  idleMs: number;
  /**
   * A process idle for less than this is not evicted for a waiting node (default 1 s): a caller
   * retrying a refused or failed update (after 0.5 s) finds it warm instead of starting it again.
   */
  evictAfterMs?: number;
  /** Called on every cold start (ms from spawn to ready; ok false when the start failed). */
  onColdStart?: (e: ColdStartEvent) => void;
  /** Called whenever the number of running (starting, training or idle) processes changes. */
  onActive?: (active: number) => void;
}

export interface ColdStartEvent {
  node: string;
  at: string;
  ms: number;
  ok: boolean;
}

interface Slot {
  node: number;
  state: NodeState;
  instance?: Instance;
  starting?: Promise<Instance>;
  inflight: number;
  lastUsed: number;
  reapTimer?: NodeJS.Timeout;
  coldStarts: number;
  failures: number;
  invocations: number;
  /** Invocations its current process has answered, and how long the last one took (ms, from ready to answered). */
  served: number;
  lastMs?: number;
}

/** Node ids as the aggregator names them: node-0 … node-(n-1). */
export const nodeIdOf = (node: number) => `node-${node}`;

/** How many recent cold starts GET /activator shows (the totals count all). */
const RECENT_EVENTS = 200;

export class Activator {
  private readonly slots: Slot[];
  private readonly queue: { slot: Slot; admit: () => void }[] = [];
  private readonly retiring = new Set<Instance>();
  /** Processes told to stop that have not exited yet: they still hold their memory, so they count against maxActive. */
  private stopping = 0;
  private readonly events: ColdStartEvent[] = [];
  private closed = false;
  peakActive = 0;

  constructor(private readonly opts: ActivatorOptions) {
    this.slots = Array.from({ length: opts.nodes }, (_, node) => ({ node, state: 'cold', inflight: 0, lastUsed: 0, coldStarts: 0, failures: 0, invocations: 0, served: 0 }));
  }

  has(node: number): boolean {
    return Number.isInteger(node) && node >= 0 && node < this.slots.length;
  }

  /** Nodes whose process runs now (starting, training or idle): asking them again costs no cold start. */
  warmNodes(): Set<string> {
    return new Set(this.warmSlots().map((s) => s.nodeId));
  }

  /** The running processes' nodes, with what their process has answered so far (aggregator/warmth.ts judges which to keep). */
  warmSlots(): { nodeId: string; served: number; lastMs?: number }[] {
    return this.slots.filter((s) => s.state === 'starting' || s.state === 'training' || s.state === 'idle').map((s) => ({ nodeId: nodeIdOf(s.node), served: s.served, lastMs: s.lastMs }));
  }

  /** Processes alive now: starting, training, idle, or stopping and not yet exited (what maxActive caps). */
  get active(): number {
    return this.slots.filter((s) => s.state === 'starting' || s.state === 'training' || s.state === 'idle').length + this.stopping;
  }

  /**
   * Runs `fn` against node's ready instance, starting it first when it is cold (the call waits
   * meanwhile, queued behind the cap). The node counts as training until fn settles.
   */
  async invoke<T>(node: number, fn: (instance: Instance) => Promise<T>): Promise<T> {
    const slot = this.slots[node]!;
    slot.invocations++;
    slot.inflight++; // before any await: a held request keeps its node from being reaped or evicted
    clearTimeout(slot.reapTimer);
    let instance: Instance | undefined;
    try {
      instance = await this.ready(slot);
      slot.state = 'training';
      const t0 = performance.now();
      const out = await fn(instance);
      slot.served++;
      slot.lastMs = performance.now() - t0;
      return out;
    } catch (e) {
      // The request broke mid-way (the process died, or answers nothing): that process is done for.
      if (instance && slot.instance === instance) this.fail(slot);
      throw e;
    } finally {
      slot.inflight--;
      if (slot.inflight === 0 && slot.instance) this.toIdle(slot);
    }
  }

  private async ready(slot: Slot): Promise<Instance> {
    if (this.closed) throw new Error('activator is shutting down');
    if (slot.instance) return slot.instance;
    // Set before any await: a second request for the same cold node waits on this one start.
    slot.starting ??= this.admit(slot)
      .then(() => {
        if (this.closed) throw new Error('activator is shutting down');
        return this.coldStart(slot);
      })
      .finally(() => (slot.starting = undefined));
    return slot.starting;
  }

  /** Resolves once slot may start a process (it is then 'starting'); FIFO behind the cap. */
  private admit(slot: Slot): Promise<void> {
    if (this.queue.length === 0 && this.tryAdmit(slot, 1)) return Promise.resolve();
    return new Promise((admit) => this.queue.push({ slot, admit }));
  }

  /**
   * Admits slot when a process may start now. At the cap, idle processes make room instead,
   * least recently used first, as many as there are `waiting` starts (counting those already
   * stopping); a start then waits until they have exited: until then they hold their memory,
   * and the cap is what bounds the federation's memory.
   */
  private tryAdmit(slot: Slot, waiting: number): boolean {
    if (this.active < this.opts.maxActive) {
      slot.state = 'starting';
      this.changed();
      return true; // the caller starts it (never a second one: tryAdmit does not pump)
    }
    const idleSince = performance.now() - (this.opts.evictAfterMs ?? 1000);
    const victims = this.slots.filter((s) => s.state === 'idle' && s.inflight === 0 && s.lastUsed <= idleSince).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of victims) {
      if (this.stopping >= waiting) break;
      void this.retire(victim);
    }
    return false;
  }

  /** Admits queued starts while there is room; called whenever room may have appeared. */
  private pump(): void {
    while (this.queue.length && this.tryAdmit(this.queue[0]!.slot, this.queue.length)) this.queue.shift()!.admit();
  }

  private async coldStart(slot: Slot): Promise<Instance> {
    slot.coldStarts++;
    slot.served = 0;
    slot.lastMs = undefined;
    const t0 = performance.now();
    try {
      const instance = await this.opts.start(slot.node);
      this.record(slot, t0, true);
      if (this.closed) {
        void instance.stop();
        throw new Error('activator is shutting down');
      }
      slot.instance = instance;
      void instance.exited.then(() => this.onExit(slot, instance));
      return instance;
    } catch (e) {
      if (slot.state === 'starting') this.record(slot, t0, false);
      slot.state = 'failed';
      slot.failures++;
      this.changed();
      this.pump();
      throw e;
    }
  }

  private record(slot: Slot, t0: number, ok: boolean): void {
    const event = { node: nodeIdOf(slot.node), at: new Date().toISOString(), ms: Math.round(performance.now() - t0), ok };
    this.events.push(event);
    if (this.events.length > RECENT_EVENTS) this.events.shift();
    this.opts.onColdStart?.(event);
  }

  /** A process that ends unasked (killed, crashed) leaves its node failed; the next request starts it again. */
  private onExit(slot: Slot, instance: Instance): void {
    if (this.retiring.delete(instance) || slot.instance !== instance) return;
    slot.instance = undefined;
    this.fail(slot);
  }

  private fail(slot: Slot): void {
    void this.retire(slot);
    slot.state = 'failed';
    slot.failures++;
    this.changed();
    this.pump();
  }

  private toIdle(slot: Slot): void {
    slot.state = 'idle';
    slot.lastUsed = performance.now();
    slot.reapTimer = setTimeout(() => {
      if (slot.state !== 'idle' || slot.inflight > 0) return;
      void this.retire(slot);
      this.changed();
      this.pump();
    }, this.opts.idleMs);
    slot.reapTimer.unref();
    this.pump();
    // Once it may be evicted, a waiting node may take its place.
    if (this.queue.length) setTimeout(() => this.pump(), (this.opts.evictAfterMs ?? 1000) + 1).unref();
  }

  /** Stops slot's process on purpose: the node is cold again at once; its room is free once the process has exited. */
  private retire(slot: Slot): Promise<unknown> {
    clearTimeout(slot.reapTimer);
    const instance = slot.instance;
    slot.instance = undefined;
    if (slot.state !== 'failed') slot.state = 'cold';
    if (!instance) return Promise.resolve();
    this.retiring.add(instance);
    this.stopping++;
    return instance.stop().finally(() => {
      this.stopping--;
      this.changed();
      this.pump();
    });
  }

  private changed(): void {
    this.peakActive = Math.max(this.peakActive, this.active);
    this.opts.onActive?.(this.active);
  }

  /** What GET /activator answers: every node's state and the cold-start record. */
  snapshot() {
    const counts: Record<NodeState, number> = { cold: 0, starting: 0, training: 0, idle: 0, failed: 0 };
    for (const s of this.slots) counts[s.state]++;
    const coldStarts = this.slots.reduce((n, s) => n + s.coldStarts, 0);
    return {
      maxActive: this.opts.maxActive,
      idleMs: this.opts.idleMs,
      active: this.active,
      peakActive: this.peakActive,
      queued: this.queue.length,
      counts,
      coldStarts,
      invocations: this.slots.reduce((n, s) => n + s.invocations, 0),
      nodes: this.slots.map((s) => ({ node: nodeIdOf(s.node), state: s.state, pid: s.instance?.pid ?? null, coldStarts: s.coldStarts, failures: s.failures, invocations: s.invocations })),
      recentColdStarts: [...this.events],
    };
  }

  /** Stops every process; held and queued requests fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const { admit } of this.queue.splice(0)) admit();
    await Promise.all(this.slots.map((s) => this.retire(s)));
  }
}

export type ActivatorSnapshot = ReturnType<Activator['snapshot']>;

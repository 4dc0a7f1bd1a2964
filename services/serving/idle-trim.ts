import v8 from 'node:v8';

/** What the trim watches: bytes V8 holds for its heap (grows under load, shrinks only after a full collection). */
const heapBytes = () => v8.getHeapStatistics().total_heap_size;

export interface IdleTrimOptions {
  /** Quiet time after the last response before a collection may run. */
  idleMs?: number;
  /** Heap growth since the last trim (or start) that makes a collection worth its pause. */
  growthBytes?: number;
  heapSize?: () => number;
}

/**
 * Gives memory back once a burst of requests is over. Under load V8 grows its old space with
 * promoted request garbage (about 8 MiB after 3,000 1-image requests) and keeps it until some
 * later full collection; for a pod that idles between bursts that is memory held for nothing.
 * Once nothing has been in flight for `idleMs` and the heap has grown by `growthBytes` since
 * the last trim, one full collection runs: a pause no request waits on (none is in flight).
 */
export class IdleTrim {
  private inFlight = 0;
  private lastActivity = 0;
  private timer: NodeJS.Timeout | undefined;
  private baseline: number;
  private readonly idleMs: number;
  private readonly growthBytes: number;
  private readonly heapSize: () => number;
  /** How many collections ran (tests, metrics). */
  trims = 0;

  constructor(
    private readonly collect: () => void,
    opts: IdleTrimOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? 250;
    this.growthBytes = opts.growthBytes ?? 4 * 2 ** 20;
    this.heapSize = opts.heapSize ?? heapBytes;
    this.baseline = this.heapSize();
  }

  started(): void {
    this.inFlight++;
  }

  ended(): void {
    this.inFlight--;
    this.lastActivity = performance.now();
    // One timer per quiet period, not one per request: it re-arms itself while requests keep coming.
    this.timer ??= this.arm(this.idleMs);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): NodeJS.Timeout {
    return setTimeout(() => this.check(), ms).unref();
  }

  private check(): void {
    this.timer = undefined;
    const quietFor = performance.now() - this.lastActivity;
    if (this.inFlight > 0) return; // the last of those requests re-arms on its way out
    if (quietFor < this.idleMs) {
      this.timer = this.arm(this.idleMs - quietFor);
      return;
    }
    if (this.heapSize() - this.baseline < this.growthBytes) return;
    this.collect();
    this.trims++;
    this.baseline = this.heapSize();
  }
}

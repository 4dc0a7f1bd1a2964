import v8 from 'node:v8';
import vm from 'node:vm';
import { Overloaded, TooLarge } from './errors.js';

/** After this much request memory has been given back, a full collection returns it to the OS. */
const COLLECT_AFTER_BYTES = 8 * 2 ** 20;

/**
 * Load shedding: every request reserves the memory its work will need (estimated from its
 * size before anything large is allocated) and gives it back when it is answered. A request
 * that would take the total over the budget is refused at once with 429 + Retry-After, so
 * a burst queues in the clients (or Knative's activator) instead of in this process.
 */
export class WorkBudget {
  private reserved = 0;
  private releasedSinceCollection = 0;
  private collecting = false;

  constructor(
    readonly budgetBytes: number,
    private readonly collect: () => void = fullCollection(),
  ) {}

  get inUse(): number {
    return this.reserved;
  }

  /** Reserves `bytes` or throws (Overloaded when busy, TooLarge when it could never fit); the returned function releases them (idempotent). */
  reserve(bytes: number): () => void {
    if (bytes > this.budgetBytes) throw new TooLarge('request_too_large', `this request needs ~${mib(bytes)} MiB; the function's whole request budget is ${mib(this.budgetBytes)} MiB`);
    if (this.reserved + bytes > this.budgetBytes) {
      throw new Overloaded(`busy: ${mib(this.reserved)} of ${mib(this.budgetBytes)} MiB of request memory in use; retry shortly`);
    }
    this.reserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
      this.releasedSinceCollection += bytes;
      this.maybeCollect();
    };
  }

  /**
   * The budget counts what requests hold, but V8 frees their garbage only when its own heap
   * heuristics say so, and with no heap limit pressure (the default old space is sized from
   * the machine, not the pod) it lets large garbage pile up past the pod's memory limit. A
   * full collection once enough has been released keeps RSS near what is actually live.
   */
  private maybeCollect(): void {
    if (this.collecting || this.releasedSinceCollection < COLLECT_AFTER_BYTES) return;
    this.collecting = true;
    setImmediate(() => {
      this.collecting = false;
      this.releasedSinceCollection = 0;
      this.collect();
    });
  }
}

/** V8's full collection, reachable without starting node with --expose-gc. */
export function fullCollection(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

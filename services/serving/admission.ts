import { Overloaded } from './errors.js';

/**
 * Load shedding: every request reserves the memory its work will need (estimated from its
 * size before anything large is allocated) and gives it back when it is answered. A request
 * that would take the total over the budget is refused at once with 429 + Retry-After, so
 * a burst queues in the clients (or Knative's activator) instead of in this process.
 */
export class WorkBudget {
  private reserved = 0;

  constructor(readonly budgetBytes: number) {}

  get inUse(): number {
    return this.reserved;
  }

  /** Reserves `bytes` or throws Overloaded; the returned function releases them (idempotent). */
  reserve(bytes: number): () => void {
    if (bytes > this.budgetBytes) throw new Overloaded(`this request needs ~${mib(bytes)} MiB; the function's whole budget is ${mib(this.budgetBytes)} MiB`);
    if (this.reserved + bytes > this.budgetBytes) {
      throw new Overloaded(`busy: ${mib(this.reserved)} of ${mib(this.budgetBytes)} MiB of request memory in use; retry shortly`);
    }
    this.reserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
    };
  }
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

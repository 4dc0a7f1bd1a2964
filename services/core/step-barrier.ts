/**
 * A reusable barrier for a fixed set of threads over one Int32 of shared memory. The counter
 * only grows: the k-th crossing waits until it reads threads·k, so no reset is needed and a
 * fast thread arriving at the next crossing cannot release a slow one from the previous.
 */
export class StepBarrier {
  private crossings = 0;
  private readonly counter: Int32Array;

  constructor(shared: SharedArrayBuffer, private readonly threads: number, private readonly timeoutMs = 120_000) {
    this.counter = new Int32Array(shared, 0, 1);
  }

  /** A fresh counter for `new StepBarrier(buffer, …)`. */
  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(4);
  }

  /**
   * Arrives and returns once every thread has. It polls briefly before sleeping: the threads
   * usually arrive within microseconds of each other, and a futex wake-up costs more than that.
   */
  arriveAndWait(spins = 2000): void {
    const target = this.threads * ++this.crossings;
    if (Atomics.add(this.counter, 0, 1) + 1 >= target) {
      Atomics.notify(this.counter, 0);
      return;
    }
    for (let i = 0; i < spins; i++) if (Atomics.load(this.counter, 0) >= target) return;
    for (;;) {
      const seen = Atomics.load(this.counter, 0);
      if (seen >= target) return;
      if (Atomics.wait(this.counter, 0, seen, this.timeoutMs) === 'timed-out') throw new Error(`a training thread did not reach the step barrier within ${this.timeoutMs / 1000} s`);
    }
  }
}

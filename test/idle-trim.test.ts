import { describe, expect, it, vi } from 'vitest';
import { IdleTrim } from '../services/serving/idle-trim.js';

/** A trim over a fake heap: `heap.bytes` is what V8 would report; collecting drops it to `heap.live`. */
function fakeTrim(opts: { idleMs?: number; growthBytes?: number } = {}) {
  const heap = { bytes: 10, live: 10 };
  const collect = vi.fn(() => void (heap.bytes = heap.live));
  const trim = new IdleTrim(collect, { idleMs: opts.idleMs ?? 5, growthBytes: opts.growthBytes ?? 100, heapSize: () => heap.bytes });
  return { heap, collect, trim };
}

describe('IdleTrim', () => {
  it('collects once the requests are over and the heap has grown', async () => {
    const { heap, collect, trim } = fakeTrim();
    trim.started();
    trim.started();
    heap.bytes = 500;
    trim.ended();
    // One request is still in flight: however long it takes, nothing is collected under it.
    await new Promise((r) => setTimeout(r, 30));
    expect(collect).not.toHaveBeenCalled();
    trim.ended();
    await vi.waitFor(() => expect(collect).toHaveBeenCalledTimes(1));
    expect(trim.trims).toBe(1);
    trim.stop();
  });

  it('does not collect when the heap has not grown enough since the last trim', async () => {
    const { heap, collect, trim } = fakeTrim();
    heap.bytes = 50; // +40 < 100
    trim.started();
    trim.ended();
    await new Promise((r) => setTimeout(r, 30));
    expect(collect).not.toHaveBeenCalled();
    // The baseline after a trim is the collected heap: the next burst must grow it again.
    heap.bytes = 200;
    heap.live = 120;
    trim.started();
    trim.ended();
    await vi.waitFor(() => expect(collect).toHaveBeenCalledTimes(1));
    heap.bytes = 180; // +60 over the post-trim 120
    trim.started();
    trim.ended();
    await new Promise((r) => setTimeout(r, 30));
    expect(collect).toHaveBeenCalledTimes(1);
    trim.stop();
  });

  it('waits for a quiet period: requests that keep coming push the collection back', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const { heap, collect, trim } = fakeTrim({ idleMs: 40 });
      heap.bytes = 500;
      for (let i = 0; i < 5; i++) {
        trim.started();
        trim.ended();
        vi.advanceTimersByTime(30);
        expect(collect).not.toHaveBeenCalled();
      }
      vi.advanceTimersByTime(40);
      expect(collect).toHaveBeenCalledTimes(1);
      trim.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});

import { NUM_CLASSES, PIXELS, predictProbabilities } from '../core/model.js';
import type { LoadedModel } from './model-holder.js';

export interface BatchedPrediction {
  probs: Float32Array;
  /** The model that actually answered (read at flush time, so a hot reload is reported exactly). */
  model: LoadedModel;
}

interface Pending {
  pixels: Float32Array;
  count: number;
  resolve: (r: BatchedPrediction) => void;
  reject: (e: unknown) => void;
}

/**
 * Adaptive micro-batching (as KServe and TF Serving do): small requests that arrive while
 * a prediction runs are merged into one tensor call on the next turn of the event loop.
 * Under load this turns N one-image predictions into one N-image call, which costs little
 * more than one; when idle a request waits for nothing (the flush runs on setImmediate).
 */
export class PredictBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(private readonly currentModel: () => LoadedModel | undefined, private readonly maxImages = 256) {}

  predict(pixels: Float32Array, count: number): Promise<BatchedPrediction> {
    if (count >= this.maxImages) {
      const model = this.currentModel();
      if (!model) return Promise.reject(new Error('no model loaded'));
      return Promise.resolve({ probs: predictProbabilities(model.model, pixels, count), model });
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ pixels, count, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const pending = this.queue;
    this.queue = [];
    for (let start = 0; start < pending.length; ) {
      // Fill one call up to maxImages, keeping each request whole.
      let images = 0;
      let end = start;
      while (end < pending.length && (end === start || images + pending[end]!.count <= this.maxImages)) images += pending[end++]!.count;
      this.run(pending.slice(start, end), images);
      start = end;
    }
  }

  private run(group: Pending[], images: number): void {
    try {
      const model = this.currentModel();
      if (!model) throw new Error('no model loaded');
      let pixels: Float32Array;
      if (group.length === 1) pixels = group[0]!.pixels;
      else {
        pixels = new Float32Array(images * PIXELS);
        let at = 0;
        for (const p of group) {
          pixels.set(p.pixels.subarray(0, p.count * PIXELS), at);
          at += p.count * PIXELS;
        }
      }
      const probs = predictProbabilities(model.model, pixels, images);
      let row = 0;
      for (const p of group) {
        p.resolve({ probs: probs.slice(row * NUM_CLASSES, (row + p.count) * NUM_CLASSES), model });
        row += p.count;
      }
    } catch (e) {
      for (const p of group) p.reject(e);
    }
  }
}

import { setImmediate as nextTurn } from 'node:timers/promises';
import { inputSize } from '../core/model-spec.js';
import { InvalidInput, ModelNotReady } from './errors.js';
import type { LoadedModel } from './model-holder.js';

export interface BatchedPrediction {
  probs: Float32Array;
  /** The model that actually answered (read when its job started, so a hot reload is reported exactly). */
  model: LoadedModel;
}

interface Pending {
  pixels: Float32Array;
  count: number;
  resolve: (r: BatchedPrediction) => void;
  reject: (e: unknown) => void;
}

/** One tensor job: several small requests merged, or one large one; run `chunk` images at a time. */
interface Job {
  members: Pending[];
  pixels: Float32Array;
  count: number;
  done: number;
  probs: Float32Array;
  model: LoadedModel;
}

/**
 * Adaptive micro-batching (as KServe and TF Serving do): small requests that arrive while a
 * prediction runs are merged into one tensor call. Every job runs in chunks of `chunk`
 * images, one chunk at a time for the whole process, jobs taking turns, with a turn of the
 * event loop between chunks: a 10,000-image request never holds the loop for longer than one
 * chunk (readiness probes and small requests get through), and the wasm heap only ever holds
 * one chunk's activations (it never shrinks, so the largest chunk sets its size for good).
 */
export class PredictBatcher {
  private incoming: Pending[] = [];
  private jobs: Job[] = [];
  private running = false;

  constructor(
    private readonly currentModel: () => LoadedModel | undefined,
    private readonly opts: { mergeUpTo?: number; chunk?: number } = {},
  ) {}

  /** Images queued or running, for load shedding and metrics. */
  get queuedImages(): number {
    return this.incoming.reduce((n, p) => n + p.count, 0) + this.jobs.reduce((n, j) => n + j.count - j.done, 0);
  }

  predict(pixels: Float32Array, count: number): Promise<BatchedPrediction> {
    return new Promise((resolve, reject) => {
      this.incoming.push({ pixels, count, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      // The first turn lets requests arriving together be merged into one job.
      await nextTurn();
      while (this.incoming.length || this.jobs.length) {
        this.admit();
        const job = this.jobs.shift();
        if (!job) continue;
        if (this.step(job)) this.jobs.push(job);
        await nextTurn();
      }
    } finally {
      this.running = false;
    }
  }

  /** Turns waiting requests into jobs: small ones merged up to mergeUpTo images, keeping each request whole. */
  private admit(): void {
    const pending = this.incoming;
    this.incoming = [];
    const mergeUpTo = this.opts.mergeUpTo ?? 256;
    for (let start = 0; start < pending.length; ) {
      let images = 0;
      let end = start;
      while (end < pending.length && (end === start || images + pending[end]!.count <= mergeUpTo)) images += pending[end++]!.count;
      this.startJob(pending.slice(start, end), images);
      start = end;
    }
  }

  private startJob(members: Pending[], count: number): void {
    const model = this.currentModel();
    if (!model) {
      for (const p of members) p.reject(new ModelNotReady());
      return;
    }
    const [PIXELS, NUM_CLASSES] = [inputSize(model.model.spec), model.model.spec.classes];
    // A swap to a model of another input shape while these waited: their images were checked against the old one.
    const stale = members.filter((p) => p.pixels.length !== p.count * PIXELS);
    for (const p of stale) p.reject(new InvalidInput('model_changed', `the served model changed to one taking ${model.model.spec.inputShape.join('x')} inputs while this request waited; resend it in that shape`));
    if (stale.length) {
      members = members.filter((p) => !stale.includes(p));
      count = members.reduce((n, p) => n + p.count, 0);
      if (!members.length) return;
    }
    let pixels = members[0]!.pixels;
    if (members.length > 1) {
      pixels = new Float32Array(count * PIXELS);
      let at = 0;
      for (const p of members) {
        pixels.set(p.pixels.subarray(0, p.count * PIXELS), at);
        at += p.count * PIXELS;
      }
    }
    this.jobs.push({ members, pixels, count, done: 0, probs: new Float32Array(count * NUM_CLASSES), model });
  }

  /** Runs one chunk of a job; true while the job has more to do. */
  private step(job: Job): boolean {
    const chunk = this.opts.chunk ?? 64;
    const n = Math.min(chunk, job.count - job.done);
    const [PIXELS, NUM_CLASSES] = [inputSize(job.model.model.spec), job.model.model.spec.classes];
    try {
      const probs = job.model.model.predict(job.pixels.subarray(job.done * PIXELS, (job.done + n) * PIXELS), n, chunk);
      job.probs.set(probs, job.done * NUM_CLASSES);
    } catch (e) {
      for (const p of job.members) p.reject(e);
      return false;
    }
    job.done += n;
    if (job.done < job.count) return true;
    let row = 0;
    for (const p of job.members) {
      p.resolve({ probs: job.members.length === 1 ? job.probs : job.probs.slice(row * NUM_CLASSES, (row + p.count) * NUM_CLASSES), model: job.model });
      row += p.count;
    }
    return false;
  }
}

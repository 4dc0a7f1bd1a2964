import { setImmediate as nextTurn } from 'node:timers/promises';
import type { TrainOptions, TrainResult } from './train.js';

/**
 * The bookkeeping both training loops share (plain and DP-SGD): running loss and accuracy per
 * epoch, progress callbacks, samples/s, and a turn of the event loop every few steps so health
 * checks and 429 answers keep flowing while a round trains.
 */
export class TrainingProgress {
  steps = 0;
  private readonly started = performance.now();
  private seen = 0;
  private lastLoss = NaN;
  private lastAccuracy = NaN;
  private epoch = 0;
  private epochStart = 0;
  private lossSum = 0;
  private correct = 0;
  private epochSamples = 0;

  constructor(private readonly total: number, private readonly opts: Pick<TrainOptions, 'epochs' | 'onEpoch' | 'onProgress'>) {}

  startEpoch(epoch: number): void {
    Object.assign(this, { epoch, epochStart: performance.now(), lossSum: 0, correct: 0, epochSamples: 0 });
  }

  /** One optimiser step over `samples` examples whose losses sum to `lossSum`. */
  async step(samples: number, lossSum: number, correct: number): Promise<void> {
    this.lossSum += lossSum;
    this.correct += correct;
    this.epochSamples += samples;
    this.steps++;
    this.opts.onProgress?.(this.epoch + 1, Math.min(this.epochSamples, this.total), this.total);
    if (this.steps % 4 === 0) await nextTurn();
  }

  endEpoch(): void {
    this.seen += this.epochSamples;
    if (this.epochSamples === 0) return;
    this.lastLoss = this.lossSum / this.epochSamples;
    this.lastAccuracy = this.correct / this.epochSamples;
    this.opts.onEpoch?.(this.epoch + 1, this.lastLoss, this.lastAccuracy, this.epochSamples / ((performance.now() - this.epochStart) / 1000));
  }

  result(stopped: boolean): TrainResult {
    const durationMs = performance.now() - this.started;
    return {
      loss: this.lastLoss,
      accuracy: this.lastAccuracy,
      samples: this.total,
      epochs: this.opts.epochs,
      steps: this.steps,
      durationMs,
      samplesPerSecond: this.seen / (durationMs / 1000),
      stopped,
    };
  }
}

export function shuffleInPlace(a: Uint32Array, rng: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/**
 * The batches of a local training, shared by the one-thread and the data-parallel loops so
 * both see the same shuffles: `order` is reshuffled each epoch and each batch is its rows
 * `order[start .. start+n)`. A `shouldStop` that fires ends the training at the next batch
 * and sets `run.stopped`.
 */
export function* epochBatches(
  count: number,
  opts: Pick<TrainOptions, 'epochs' | 'batchSize' | 'shouldStop'>,
  rng: () => number,
  progress: Pick<TrainingProgress, 'startEpoch' | 'endEpoch'>,
  run: { stopped: boolean },
): Generator<{ order: Uint32Array; start: number; n: number }> {
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  for (let epoch = 0; epoch < opts.epochs && !run.stopped; epoch++) {
    shuffleInPlace(order, rng);
    progress.startEpoch(epoch);
    for (let start = 0; start < count; start += opts.batchSize) {
      if (opts.shouldStop?.()) {
        run.stopped = true;
        break;
      }
      yield { order, start, n: Math.min(opts.batchSize, count - start) };
    }
    progress.endEpoch();
  }
}

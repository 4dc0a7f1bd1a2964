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

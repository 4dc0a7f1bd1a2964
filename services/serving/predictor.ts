import { argmaxRows } from '../core/model.js';
import { REFERENCE_CNN, type ModelSpec } from '../core/model-spec.js';
import type { Metrics } from '../shared/metrics.js';
import { PredictBatcher } from './batcher.js';
import { ModelNotFound, ModelNotReady, VersionNotLoaded } from './errors.js';
import type { LoadedModel } from './model-holder.js';
import type { Batch } from './tensor-input.js';

export interface Prediction {
  /** count x classes probabilities, row-major. */
  probs: Float32Array;
  classes: number[];
  count: number;
  /** The version that answered. */
  model: LoadedModel;
}

/** Which model a request names: its name and, on versioned routes, a version. */
export interface ModelRef {
  name: string;
  version?: string;
}

/**
 * The model behind every protocol (KServe's `model.py`): which version is loaded, whether it
 * is ready, and predictions on image batches. It never sees HTTP; it throws the domain errors
 * of errors.ts, which each protocol adapter maps to its own status and error body.
 */
export class Predictor {
  /** The served model's spec (the reference CNN until one is loaded): its name, input shape and classes. */
  get spec(): ModelSpec {
    return this.source()?.spec ?? REFERENCE_CNN;
  }

  get name(): string {
    return this.spec.name;
  }

  private readonly batcher: PredictBatcher;

  constructor(private readonly source: () => LoadedModel | undefined, opts: { chunk?: number; metrics?: Metrics } = {}) {
    this.batcher = new PredictBatcher(source, { chunk: opts.chunk });
    this.metrics = opts.metrics;
  }

  private readonly metrics?: Metrics;

  get current(): LoadedModel | undefined {
    return this.source();
  }

  get ready(): boolean {
    return this.source() !== undefined;
  }

  /** Images waiting for or in a tensor call. */
  get queuedImages(): number {
    return this.batcher.queuedImages;
  }

  /** The loaded model a request names, or the domain error saying why there is none. */
  resolve(ref: ModelRef): LoadedModel {
    if (ref.name !== this.name) throw new ModelNotFound(ref.name, this.name);
    const current = this.source();
    if (!current) throw new ModelNotReady();
    if (ref.version !== undefined && ref.version !== String(current.version)) throw new VersionNotLoaded(ref.name, ref.version, String(current.version));
    return current;
  }

  async predict(batch: Batch, ref: ModelRef): Promise<Prediction> {
    this.resolve(ref);
    const { probs, model } = await this.batcher.predict(batch.pixels, batch.count);
    // A hot swap between the check and the tensor call must not answer from another version than the one asked for.
    if (ref.version !== undefined && String(model.version) !== ref.version) throw new VersionNotLoaded(ref.name, ref.version, String(model.version));
    this.metrics?.predictions.inc();
    this.metrics?.imagesServed.inc(batch.count);
    return { probs, classes: argmaxRows(probs, model.spec?.classes), count: batch.count, model };
  }
}

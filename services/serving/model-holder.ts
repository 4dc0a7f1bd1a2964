import type pg from 'pg';
import { decodeStoredWeights } from '../core/codec.js';
import type { Logger } from '../shared/log.js';
import type { Metrics } from '../shared/metrics.js';
import { buildModel, predictProbabilities, referenceModelSpec, setFlatWeights, PIXELS } from '../core/model.js';
import type { tfl } from '../core/tf.js';
import { getLatestModel, getModel, getModelBefore, latestVersion, type ModelVersion } from '../store/model-store.js';

export interface LoadedModel {
  version: number;
  model: tfl.LayersModel;
  checksum: string;
  metrics: Record<string, unknown>;
  createdAt: string;
  loadedAt: string;
  /** True while this node serves a canary: a version promoted to named nodes ahead of the fleet. */
  canary?: boolean;
}

export interface LoadTimings {
  fetchMs: number;
  decodeMs: number;
  installMs: number;
}

/**
 * Holds the served model and swaps in newer versions without a gap: the new weights go
 * into a standby model, which is warmed up and then becomes current in one assignment.
 * Predictions are synchronous, so no request ever sees a half-loaded model.
 */
export class ModelHolder {
  current: LoadedModel | undefined;
  lastTimings: LoadTimings | undefined;
  private standby: tfl.LayersModel | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Versions that failed their integrity check: never retried (the bytes of a version never change). */
  private readonly refused = new Set<number>();

  constructor(private readonly pool: pg.Pool, private readonly log: Logger, private readonly metrics?: Metrics) {}

  /** Loads the newest version if it is newer than the current one. */
  refresh(backendReady?: Promise<unknown>): Promise<LoadedModel | undefined> {
    return this.serialised(async () => {
      const newest = await latestVersion(this.pool);
      if (newest === undefined || (this.current && newest <= this.current.version)) return this.current;
      // Newest first; a version that fails its integrity check is skipped for the next older
      // one, so a cold start after a corrupt publish still serves the last good version.
      let fetchStart = performance.now();
      let row = await getLatestModel(this.pool);
      while (row && (!this.current || row.version > this.current.version)) {
        if (!this.refused.has(row.version)) {
          const fetchMs = performance.now() - fetchStart;
          // At start-up the fetch overlaps the backend's initialisation; models are built only once it is ready.
          await backendReady;
          const loaded = this.install(row, fetchMs);
          if (loaded?.version === row.version) return loaded;
        }
        fetchStart = performance.now();
        row = await getModelBefore(this.pool, row.version);
      }
      return this.current;
    });
  }

  /** Loads a version named by a NOTIFY; older or equal versions are ignored. */
  onPublished(version: number): Promise<LoadedModel | undefined> {
    return this.serialised(async () => {
      if ((this.current && version <= this.current.version) || this.refused.has(version)) return this.current;
      const fetchStart = performance.now();
      const row = await getModel(this.pool, version);
      return row ? this.install(row, performance.now() - fetchStart) : this.current;
    });
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private install(row: ModelVersion, fetchMs: number): LoadedModel | undefined {
    const t0 = performance.now();
    let flat: Float32Array;
    try {
      flat = decodeStoredWeights(row.bytes, row.checksum, referenceModelSpec()).flat;
    } catch (e) {
      this.refused.add(row.version);
      this.log.error('refusing model version: integrity check failed; keeping the previous one', { version: row.version, err: (e as Error).message, kept: this.current?.version ?? null });
      return this.current;
    }
    const t1 = performance.now();
    const target = this.standby ?? buildModel(1);
    setFlatWeights(target, flat);
    predictProbabilities(target, new Float32Array(PIXELS), 1); // warm-up: first predict compiles kernels
    const previous = this.current;
    this.current = { version: row.version, model: target, checksum: row.checksum, metrics: row.metrics, createdAt: row.createdAt, loadedAt: new Date().toISOString() };
    this.standby = previous?.model;
    const t2 = performance.now();
    this.lastTimings = { fetchMs, decodeMs: t1 - t0, installMs: t2 - t1 };
    this.metrics?.modelVersion.set(row.version);
    this.metrics?.modelLoadSeconds.set({ phase: 'fetch' }, fetchMs / 1000);
    this.metrics?.modelLoadSeconds.set({ phase: 'decode' }, (t1 - t0) / 1000);
    this.metrics?.modelLoadSeconds.set({ phase: 'install' }, (t2 - t1) / 1000);
    this.log.info('model loaded', { version: row.version, previous: previous?.version ?? null, fetch_ms: Math.round(fetchMs), decode_ms: Math.round(t1 - t0), install_ms: Math.round(t2 - t1) });
    return this.current;
  }
}

import type pg from 'pg';
import { decodeStoredWeights } from '../core/codec.js';
import type { Logger } from '../shared/log.js';
import type { Metrics } from '../shared/metrics.js';
import { SpecModel, weightSpecs } from '../core/forward.js';
import { inputSize, specKey, type ModelSpec } from '../core/model-spec.js';
import { versionModelSpec } from '../store/run-model.js';
import { getModel, type ModelVersion } from '../store/model-store.js';
import { promotionHistory, reportServing } from '../store/promotion.js';

export interface LoadedModel {
  version: number;
  /** The spec's forward pass on tfjs-core ops: serving never loads tfjs-layers. */
  model: SpecModel;
  checksum: string;
  metrics: Record<string, unknown>;
  createdAt: string;
  loadedAt: string;
  /** What the version is (services/store/run-model.ts): input shape, classes, name. */
  spec?: ModelSpec;
  /** True while this node serves a canary: a version promoted to named nodes ahead of the fleet. */
  canary?: boolean;
}

export interface LoadTimings {
  fetchMs: number;
  decodeMs: number;
  installMs: number;
}

/**
 * Holds the served model: the version PROMOTED for this node (a fleet promotion, or a
 * canary naming it), never merely the newest. With nothing promoted it holds nothing
 * and the function is not ready. It records what it serves (serving_status) for the
 * dashboard. A swap is gapless: the new weights go into a standby
 * model, which is warmed up and then becomes current in one assignment. Predictions are
 * synchronous, so no request ever sees a half-loaded model.
 */
export class ModelHolder {
  current: LoadedModel | undefined;
  lastTimings: LoadTimings | undefined;
  private standby: SpecModel | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Versions that failed their integrity check: never retried (the bytes of a version never change). */
  private readonly refused = new Set<number>();

  /** `nodeId` selects canary promotions naming this node; without one only fleet promotions apply. */
  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    readonly nodeId?: string,
  ) {}

  /**
   * Loads the version promoted for this node if it is not the one served. A promoted
   * version that fails its integrity check is refused: the last good one stays, or on a
   * cold start the newest earlier promotion for this node that loads.
   */
  refresh(backendReady?: Promise<unknown>): Promise<LoadedModel | undefined> {
    return this.serialised(async () => {
      const history = (await promotionHistory(this.pool, { nodeId: this.nodeId, limit: 20 })).filter((p) => p.nodes === null || this.nodeId !== undefined);
      const promoted = history[0];
      if (!promoted) return this.current;
      const canary = promoted.nodes !== null;
      if (this.current?.version === promoted.version) return this.flag(canary);
      const tried = new Set<number>();
      for (const p of history) {
        if (tried.has(p.version) || this.refused.has(p.version)) continue;
        tried.add(p.version);
        if (this.current && p !== promoted) break; // a good version is already serving: keep it
        const fetchStart = performance.now();
        const row = await getModel(this.pool, p.version);
        const spec = await versionModelSpec(this.pool, p.version);
        const fetchMs = performance.now() - fetchStart;
        // At start-up the fetch overlaps the backend's initialisation; models are built only once it is ready.
        await backendReady;
        if (row && this.install(row, spec, fetchMs, p.nodes !== null)) return this.current;
      }
      return this.current;
    });
  }

  /** A promotion was announced (NOTIFY): the promotions table, not the payload, decides. */
  onPromotion(): Promise<LoadedModel | undefined> {
    return this.refresh();
  }

  private flag(canary: boolean): LoadedModel | undefined {
    if (this.current && Boolean(this.current.canary) !== canary) {
      this.current = { ...this.current, canary };
      this.metrics?.servingCanary.set(canary ? 1 : 0);
      this.log.info('promotion scope changed', { version: this.current.version, canary });
      this.report();
    }
    return this.current;
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** True when `row` now serves; false (and remembered) when its weights fail the integrity check. */
  private install(row: ModelVersion, spec: ModelSpec, fetchMs: number, canary: boolean): boolean {
    const t0 = performance.now();
    let flat: Float32Array;
    try {
      flat = decodeStoredWeights(row.bytes, row.checksum, weightSpecs(spec)).flat;
    } catch (e) {
      this.refused.add(row.version);
      this.log.error('refusing model version: integrity check failed; keeping the previous one', { version: row.version, err: (e as Error).message, kept: this.current?.version ?? null });
      return false;
    }
    const t1 = performance.now();
    // The standby is reused only for the same model; another spec has other weight shapes.
    const sameModel = this.standby !== undefined && specKey(this.standby.spec) === specKey(spec);
    if (this.standby && !sameModel) this.standby.dispose();
    const target = sameModel ? this.standby! : new SpecModel(spec, flat);
    if (sameModel) target.setWeights(flat);
    target.predict(new Float32Array(inputSize(spec)), 1); // warm-up: first predict compiles kernels
    const previous = this.current;
    this.current = { version: row.version, model: target, checksum: row.checksum, metrics: row.metrics, createdAt: row.createdAt, loadedAt: new Date().toISOString(), canary, spec };
    this.standby = previous?.model;
    const t2 = performance.now();
    this.lastTimings = { fetchMs, decodeMs: t1 - t0, installMs: t2 - t1 };
    this.metrics?.modelVersion.set(row.version);
    this.metrics?.servingCanary.set(canary ? 1 : 0);
    this.metrics?.modelLoadSeconds.set({ phase: 'fetch' }, fetchMs / 1000);
    this.metrics?.modelLoadSeconds.set({ phase: 'decode' }, (t1 - t0) / 1000);
    this.metrics?.modelLoadSeconds.set({ phase: 'install' }, (t2 - t1) / 1000);
    this.log.info('model loaded', { version: row.version, previous: previous?.version ?? null, canary, fetch_ms: Math.round(fetchMs), decode_ms: Math.round(t1 - t0), install_ms: Math.round(t2 - t1) });
    this.report();
    return true;
  }

  /** Best effort: the dashboard's "serves" column; serving goes on whether or not the write lands. */
  private report(): void {
    const c = this.current;
    if (!c || this.nodeId === undefined) return;
    reportServing(this.pool, this.nodeId, c.version, Boolean(c.canary)).catch((e) => this.log.warn('could not report the served version', { err: (e as Error).message }));
  }
}

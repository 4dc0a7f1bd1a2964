/**
 * Which trainers are warm on Knative: a trainer Knative Service with a ready pod that is not
 * terminating answers without a cold start. `edgefl up` knows this from its own activator
 * (services/cli/up-scale.ts); in a cluster the aggregator reads it from the Kubernetes API
 * every few seconds and registers it as the warmth source (aggregator/warmth.ts), so warm-aware
 * selection (sync rounds, fedlesscan, fedbuff) works there too instead of presuming that a node
 * which answered recently is still up. Knative scales each node on its own, so there is no
 * shared capacity to report.
 */
import type { Logger } from '../services/shared/log.js';
import type { WarmthSource } from './warmth.js';

/** How often the pod list is read: well inside Knative's 60 s stable window. */
export const WARMTH_REFRESH_MS = 5_000;
/** A view older than this (the API unreachable meanwhile) presumes nothing warm rather than trusting stale pods. */
export const WARMTH_MAX_AGE_MS = 30_000;

export interface KubeWarmth {
  source: WarmthSource;
  /** Reads the cluster once now (the timer does it every refreshMs). */
  refresh(): Promise<void>;
  stop(): void;
}

/**
 * A warmth source kept fresh by `read` (the node ids whose trainer has a ready pod). A failed
 * read is logged once per failure streak and keeps the last view until it is maxAgeMs old.
 */
export function kubeWarmth(read: () => Promise<readonly string[]>, log: Logger, opts: { refreshMs?: number; maxAgeMs?: number; now?: () => number } = {}): KubeWarmth {
  const { refreshMs = WARMTH_REFRESH_MS, maxAgeMs = WARMTH_MAX_AGE_MS, now = Date.now } = opts;
  let view: { at: number; warm: ReadonlySet<string> } | undefined;
  let failing = false;
  const empty: ReadonlySet<string> = new Set();
  async function refresh(): Promise<void> {
    try {
      view = { at: now(), warm: new Set(await read()) };
      if (failing) log.info('trainer warmth readable again', { warm: view.warm.size });
      failing = false;
    } catch (e) {
      if (!failing) log.warn('cannot read which trainers are warm; selection presumes none once the last view is stale', { err: (e as Error).message, max_age_s: maxAgeMs / 1000 });
      failing = true;
    }
  }
  const timer = setInterval(() => void refresh(), refreshMs);
  timer.unref();
  return {
    source: { warm: () => (view && now() - view.at <= maxAgeMs ? view.warm : empty) },
    refresh,
    stop: () => clearInterval(timer),
  };
}

/** The cluster's view: trainer nodes (as `node-<id>`, the ids discovery gives them) with a ready, non-terminating pod. */
export async function readClusterWarmth(namespace: string): Promise<string[]> {
  const { edgeNodeStatus, loadDefaultKubeConfig, warmTrainerNodes } = await import('../services/kube/discovery.js');
  return warmTrainerNodes(await edgeNodeStatus(await loadDefaultKubeConfig(), namespace)).map((id) => `node-${id}`);
}

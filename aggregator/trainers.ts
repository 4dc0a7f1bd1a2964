import type { Config } from '../services/shared/config.js';
import type { Logger } from '../services/shared/log.js';
import type { TrainerTarget } from './invoke.js';

/**
 * Where the trainers are: a static list (EDGEFL_TRAINER_URLS, node-i is the i-th URL) or,
 * in a cluster, the Knative Services labelled as trainers. Cluster discovery is loaded
 * lazily so local runs never import the Kubernetes client.
 */
export function trainerSource(cfg: Config, log: Logger): () => Promise<TrainerTarget[]> {
  if (cfg.discovery === 'static') {
    const targets = cfg.trainerUrls.map((url, i) => ({ nodeId: `node-${i}`, url }));
    return async () => targets;
  }
  let cache: { at: number; targets: TrainerTarget[] } | undefined;
  return async () => {
    if (cache && Date.now() - cache.at < 10_000) return cache.targets;
    const { discoverTrainers, loadDefaultKubeConfig } = await import('../services/kube/discovery.js');
    const found = await discoverTrainers(await loadDefaultKubeConfig(), cfg.namespace);
    const targets = found.filter((t) => t.url).map((t) => ({ nodeId: `node-${t.nodeId}`, url: t.url! }));
    log.info('discovered trainers', { count: targets.length, not_ready: found.filter((t) => !t.ready).map((t) => t.name) });
    cache = { at: Date.now(), targets };
    return targets;
  };
}

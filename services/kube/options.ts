/**
 * What a rendered deployment can vary, with the defaults that `knative/` is rendered from and
 * the checks that reject a combination a cluster would refuse (or silently cut short).
 */
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_NODES, EVENTING, KNATIVE_TUNING } from './constants.js';
import type { DataVolume } from './data-volume.js';

export interface ManifestOptions {
  nodes: number;
  image: string;
  namespace: string;
  /** Include Broker, Triggers and SinkBinding (what components/eventing adds). */
  eventing: boolean;
  /** Include the PodMonitors and the Grafana dashboard ConfigMap (what components/observability adds). */
  observability?: boolean;
  /** Serving min-scale; 0 (default) scales to zero, 1 keeps one warm pod per node. */
  servingMinScale?: number;
  /**
   * Longest a trainer request may take (Knative timeoutSeconds and responseStartTimeoutSeconds,
   * and the Triggers' delivery timeout). A run's roundTimeoutS must not exceed it.
   */
  trainerTimeoutSeconds?: number;
  /** The cluster's `max-revision-timeout-seconds`; trainerTimeoutSeconds above it is refused. */
  clusterMaxRevisionTimeoutSeconds?: number;
  /** Broker class annotation (see EVENTING.defaultBrokerClass for the durability choice). */
  brokerClass?: string;
  /** Each node's own data mounted into its trainer (services/kube/data-volume.ts); null: the built-in partitions. */
  dataVolume?: DataVolume | null;
}

export type KnativeDirOptions = Omit<ManifestOptions, 'eventing' | 'observability'>;

export const DEFAULT_MANIFEST_OPTIONS: KnativeDirOptions = {
  nodes: DEFAULT_NODES,
  image: DEFAULT_IMAGE,
  namespace: DEFAULT_NAMESPACE,
  servingMinScale: 0,
};

/** The options with every default filled in, so the builders never guess. */
export type ResolvedOptions = Required<ManifestOptions>;

export function resolveOptions(opts: ManifestOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    observability: false,
    servingMinScale: 0,
    trainerTimeoutSeconds: KNATIVE_TUNING.trainerTimeoutSeconds,
    clusterMaxRevisionTimeoutSeconds: KNATIVE_TUNING.clusterMaxRevisionTimeoutSeconds,
    brokerClass: EVENTING.defaultBrokerClass,
    dataVolume: null,
    ...stripUndefined(opts),
  } as ResolvedOptions;
  checkOptions(resolved);
  return resolved;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const isInt = (n: number, min: number) => Number.isInteger(n) && n >= min;

function checkOptions(o: ResolvedOptions): void {
  if (!isInt(o.nodes, 1)) throw new Error(`nodes must be an integer >= 1; got ${o.nodes}`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.namespace) || o.namespace.length > 63) {
    throw new Error(`namespace '${o.namespace}' is not a valid DNS-1123 label`);
  }
  if (!o.image || /\s/.test(o.image)) throw new Error(`image '${o.image}' is not a valid image reference`);
  if (/:latest$/.test(o.image) || !/[:@]/.test(o.image.slice(o.image.lastIndexOf('/') + 1))) {
    throw new Error(`image '${o.image}' must name an explicit version or digest, not latest`);
  }
  if (!isInt(o.servingMinScale, 0) || o.servingMinScale > KNATIVE_TUNING.servingMaxScale) {
    throw new Error(`servingMinScale must be an integer in 0..${KNATIVE_TUNING.servingMaxScale}; got ${o.servingMinScale}`);
  }
  if (!isInt(o.clusterMaxRevisionTimeoutSeconds, 1)) {
    throw new Error(`clusterMaxRevisionTimeoutSeconds must be an integer >= 1; got ${o.clusterMaxRevisionTimeoutSeconds}`);
  }
  if (!isInt(o.trainerTimeoutSeconds, 1) || o.trainerTimeoutSeconds > o.clusterMaxRevisionTimeoutSeconds) {
    // Knative's webhook would reject the revision; say what to change instead.
    throw new Error(
      `trainerTimeoutSeconds must be an integer in 1..${o.clusterMaxRevisionTimeoutSeconds} (the cluster's max-revision-timeout-seconds); ` +
        `got ${o.trainerTimeoutSeconds}. Raise max-revision-timeout-seconds in knative-serving/config-defaults first, then pass the new maximum.`,
    );
  }
  if (!/^[A-Za-z][A-Za-z0-9.-]*$/.test(o.brokerClass)) throw new Error(`brokerClass '${o.brokerClass}' is not a valid class name`);
}

/** ISO 8601 duration, as Knative Eventing's delivery fields take it. */
export const isoSeconds = (s: number) => `PT${s}S`;

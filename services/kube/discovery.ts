/**
 * Finds edgefl's Knative Services through the Kubernetes API (`EDGEFL_DISCOVERY=kube`,
 * `edgefl status --kube`, benchmarks waiting for scale-to-zero).
 *
 * `@kubernetes/client-node` is loaded lazily: it is a large module graph, only needed in kube
 * mode, and v2.x pulls in undici 8, which cannot load on Node < 22.19. A static import would
 * take every importer down with it (the aggregator in static mode, the whole CLI), so callers
 * get a clear error from `loadKubeClient()` only when they actually use the cluster.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { LABELS, PART_OF } from './constants.js';

type KubeClientModule = typeof import('@kubernetes/client-node');

export const KNATIVE_SERVING = { group: 'serving.knative.dev', version: 'v1', plural: 'services' } as const;
const KSVC_RESOURCE = `${KNATIVE_SERVING.plural}.${KNATIVE_SERVING.group}`;

export class KubeClientUnavailableError extends Error {}

let clientModule: Promise<KubeClientModule> | undefined;

/** Loads @kubernetes/client-node once, turning an engine mismatch into an actionable message. */
export function loadKubeClient(): Promise<KubeClientModule> {
  clientModule ??= import('@kubernetes/client-node').catch((err: unknown) => {
    clientModule = undefined;
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    const hint = major > 22 || (major === 22 && minor >= 19) ? '' : ' (v2.x depends on undici 8, which needs Node >= 22.19)';
    throw new KubeClientUnavailableError(
      `@kubernetes/client-node could not be loaded on Node ${process.versions.node}${hint}: ${(err as Error).message}`,
    );
  });
  return clientModule;
}

/** KubeConfig from $KUBECONFIG / ~/.kube/config, falling back to the in-cluster service account. */
export async function loadDefaultKubeConfig(): Promise<KubeConfig> {
  const { KubeConfig: Config } = await loadKubeClient();
  const kc = new Config();
  kc.loadFromDefault();
  return kc;
}

// ---------------------------------------------------------------------------------------
// Shapes of the bits of Knative/Kubernetes objects we read (everything else is ignored).
// ---------------------------------------------------------------------------------------

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

export interface KnativeServiceObject {
  metadata?: { name?: string; labels?: Record<string, string> };
  status?: {
    url?: string;
    conditions?: Condition[];
    latestReadyRevisionName?: string;
    latestCreatedRevisionName?: string;
  };
}

interface PodObject {
  metadata?: { name?: string; labels?: Record<string, string>; deletionTimestamp?: unknown };
  status?: { conditions?: Condition[] };
}

export interface TrainerEndpoint {
  nodeId: number;
  name: string;
  /** status.url; null until Knative has assigned a route. */
  url: string | null;
  ready: boolean;
}

export interface KnativeServiceStatus {
  name: string;
  url: string | null;
  ready: boolean;
  /** Reason/message of a not-ready Ready condition, for the status table. */
  reason?: string;
  latestReadyRevisionName: string | null;
  latestCreatedRevisionName: string | null;
  /** Pods currently present (terminating ones included: they still hold the edge node's memory). */
  pods: number;
  readyPods: number;
}

export interface EdgeNodeStatus {
  nodeId: number;
  trainer: KnativeServiceStatus | null;
  serving: KnativeServiceStatus | null;
}

// ---------------------------------------------------------------------------------------
// Pure helpers (exported for tests).
// ---------------------------------------------------------------------------------------

function readyCondition(conditions: Condition[] | undefined): Condition | undefined {
  return conditions?.find((c) => c.type === 'Ready');
}

export function isReady(obj: { status?: { conditions?: Condition[] } }): boolean {
  return readyCondition(obj.status?.conditions)?.status === 'True';
}

function nodeIdOf(obj: { metadata?: { labels?: Record<string, string> } }): number | undefined {
  const raw = obj.metadata?.labels?.[LABELS.nodeId];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Number(raw);
}

/** Trainer endpoints from a Knative Service list, sorted by node id; unlabelled services are skipped. */
export function trainersFromList(items: KnativeServiceObject[]): TrainerEndpoint[] {
  const out: TrainerEndpoint[] = [];
  for (const svc of items) {
    const nodeId = nodeIdOf(svc);
    const name = svc.metadata?.name;
    if (nodeId === undefined || !name) continue;
    out.push({ nodeId, name, url: svc.status?.url ?? null, ready: isReady(svc) });
  }
  return out.sort((a, b) => a.nodeId - b.nodeId);
}

export function edgeNodesFromLists(services: KnativeServiceObject[], pods: PodObject[]): EdgeNodeStatus[] {
  const podsBySvc = new Map<string, { pods: number; readyPods: number }>();
  for (const pod of pods) {
    const svc = pod.metadata?.labels?.[LABELS.knativeService];
    if (!svc) continue;
    const entry = podsBySvc.get(svc) ?? { pods: 0, readyPods: 0 };
    entry.pods++;
    if (!pod.metadata?.deletionTimestamp && isReady(pod)) entry.readyPods++;
    podsBySvc.set(svc, entry);
  }
  const nodes = new Map<number, EdgeNodeStatus>();
  for (const svc of services) {
    const nodeId = nodeIdOf(svc);
    const role = svc.metadata?.labels?.[LABELS.role];
    const name = svc.metadata?.name;
    if (nodeId === undefined || !name || (role !== 'trainer' && role !== 'serving')) continue;
    const ready = readyCondition(svc.status?.conditions);
    const status: KnativeServiceStatus = {
      name,
      url: svc.status?.url ?? null,
      ready: ready?.status === 'True',
      ...(ready && ready.status !== 'True' && (ready.reason || ready.message)
        ? { reason: [ready.reason, ready.message].filter(Boolean).join(': ') }
        : {}),
      latestReadyRevisionName: svc.status?.latestReadyRevisionName ?? null,
      latestCreatedRevisionName: svc.status?.latestCreatedRevisionName ?? null,
      ...(podsBySvc.get(name) ?? { pods: 0, readyPods: 0 }),
    };
    const node = nodes.get(nodeId) ?? { nodeId, trainer: null, serving: null };
    node[role] = status;
    nodes.set(nodeId, node);
  }
  return [...nodes.values()].sort((a, b) => a.nodeId - b.nodeId);
}

function statusCodeOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  // ApiException carries `code`; Watch errors carry `statusCode`. Node errno codes are strings.
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

function bodyOf(err: unknown): { reason?: string; details?: { name?: string } } | undefined {
  const body = (err as { body?: unknown })?.body;
  if (body && typeof body === 'object') return body as { reason?: string; details?: { name?: string } };
  if (typeof body === 'string') {
    try {
      return JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export class KubeDiscoveryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Maps API failures to messages that say what to fix. A 404 on a *list* means the resource
 * type is not served at all (lists in a missing namespace return 200 with no items).
 */
export function kubeError(err: unknown, resource: string, namespace: string): KubeDiscoveryError {
  if (err instanceof KubeDiscoveryError || err instanceof KubeClientUnavailableError) return err as KubeDiscoveryError;
  const status = statusCodeOf(err);
  if (status === 403) {
    return new KubeDiscoveryError(`RBAC: the service account cannot list ${resource} in ${namespace}`, 403, { cause: err });
  }
  if (status === 404 && resource === KSVC_RESOURCE) {
    return new KubeDiscoveryError(`Knative Serving CRD not installed (the API does not serve ${KSVC_RESOURCE})`, 404, { cause: err });
  }
  if (status === 401) {
    return new KubeDiscoveryError(`unauthorized: the Kubernetes API rejected the credentials (listing ${resource} in ${namespace})`, 401, { cause: err });
  }
  const detail = status ? `HTTP ${status}` : (err as Error)?.message ?? String(err);
  return new KubeDiscoveryError(`Kubernetes API error listing ${resource} in ${namespace}: ${detail}`, status, { cause: err });
}

// ---------------------------------------------------------------------------------------
// API calls.
// ---------------------------------------------------------------------------------------

async function listKnativeServices(kc: KubeConfig, namespace: string, labelSelector: string): Promise<KnativeServiceObject[]> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    const list = await api.listNamespacedCustomObject({ ...KNATIVE_SERVING, namespace, labelSelector });
    return ((list as { items?: KnativeServiceObject[] })?.items ?? []) as KnativeServiceObject[];
  } catch (err) {
    throw kubeError(err, KSVC_RESOURCE, namespace);
  }
}

async function listPods(kc: KubeConfig, namespace: string, labelSelector: string): Promise<{ items: PodObject[]; resourceVersion?: string }> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CoreV1Api);
  try {
    const list = await api.listNamespacedPod({ namespace, labelSelector });
    return { items: (list.items ?? []) as PodObject[], resourceVersion: list.metadata?.resourceVersion };
  } catch (err) {
    throw kubeError(err, 'pods', namespace);
  }
}

const PART_OF_SELECTOR = `${LABELS.partOf}=${PART_OF}`;

/** Trainer Knative Services (label edgefl.dev/role=trainer), their URLs and readiness. */
export async function discoverTrainers(kc: KubeConfig, namespace: string): Promise<TrainerEndpoint[]> {
  return trainersFromList(await listKnativeServices(kc, namespace, `${LABELS.role}=trainer`));
}

/** Serving Knative Services, same shape as trainers (for the aggregator's model push / dashboard). */
export async function discoverServing(kc: KubeConfig, namespace: string): Promise<TrainerEndpoint[]> {
  return trainersFromList(await listKnativeServices(kc, namespace, `${LABELS.role}=serving`));
}

/** Per edge node: its trainer and serving services, readiness, latest revision and pod counts. */
export async function edgeNodeStatus(kc: KubeConfig, namespace: string): Promise<EdgeNodeStatus[]> {
  const selector = `${PART_OF_SELECTOR},${LABELS.role} in (trainer,serving)`;
  const services = await listKnativeServices(kc, namespace, selector);
  // One pod list for all services (grouped by Knative's service label) instead of one per service.
  const pods = await listPods(kc, namespace, `${LABELS.knativeService},${LABELS.role} in (trainer,serving)`);
  return edgeNodesFromLists(services, pods.items);
}

/** Confirms the Knative Service exists, so a typo doesn't read as "already scaled to zero". */
async function assertServiceExists(kc: KubeConfig, namespace: string, service: string): Promise<void> {
  const k8s = await loadKubeClient();
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    await api.getNamespacedCustomObject({ ...KNATIVE_SERVING, namespace, name: service });
  } catch (err) {
    // A Status body naming the object = the object is missing; anything else = the type is missing.
    if (statusCodeOf(err) === 404 && bodyOf(err)?.details?.name === service) {
      throw new KubeDiscoveryError(`Knative Service ${service} not found in ${namespace}`, 404, { cause: err });
    }
    throw kubeError(err, KSVC_RESOURCE, namespace);
  }
}

export interface ScaleToZeroResult {
  waitedMs: number;
}

/**
 * Resolves once no pod of Knative Service `service` exists any more (terminating pods count
 * as present: until they are gone the next request is not a true cold start). Lists, then
 * watches from the list's resourceVersion; when the watch ends early (server close, 30 s
 * inactivity, 410 Gone) it re-lists and watches again until `timeoutMs`.
 */
export async function waitForScaleToZero(
  kc: KubeConfig,
  namespace: string,
  service: string,
  timeoutMs: number,
): Promise<ScaleToZeroResult> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  const labelSelector = `${LABELS.knativeService}=${service}`;
  await assertServiceExists(kc, namespace, service);
  const k8s = await loadKubeClient();
  let remainingPods: string[] = [];
  for (;;) {
    const list = await listPods(kc, namespace, labelSelector);
    const present = new Set(list.items.map((p) => p.metadata?.name).filter((n): n is string => !!n));
    if (present.size === 0) return { waitedMs: Date.now() - started };
    remainingPods = [...present];
    if (Date.now() >= deadline) break;
    const outcome = await watchUntilEmpty(k8s, kc, namespace, labelSelector, list.resourceVersion, present, deadline);
    if (outcome === 'empty') return { waitedMs: Date.now() - started };
    if (outcome === 'timeout') {
      remainingPods = [...present];
      break;
    }
    // 'relist': brief pause so a flapping watch cannot spin.
    await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now()))));
  }
  throw new KubeDiscoveryError(
    `timed out after ${timeoutMs} ms waiting for ${service} in ${namespace} to scale to zero ` +
      `(${remainingPods.length} pod(s) left: ${remainingPods.join(', ')})`,
  );
}

function watchUntilEmpty(
  k8s: KubeClientModule,
  kc: KubeConfig,
  namespace: string,
  labelSelector: string,
  resourceVersion: string | undefined,
  present: Set<string>,
  deadline: number,
): Promise<'empty' | 'relist' | 'timeout'> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let controller: AbortController | undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      controller?.abort();
      fn();
    };
    const timer = setTimeout(() => finish(() => resolve('timeout')), Math.max(0, deadline - Date.now()));
    const watch = new k8s.Watch(kc);
    watch
      .watch(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
        { labelSelector, resourceVersion, allowWatchBookmarks: true },
        (type: string, obj: PodObject) => {
          const name = obj?.metadata?.name;
          if (type === 'ERROR') return finish(() => resolve('relist')); // e.g. 410 Gone: resourceVersion too old
          if (!name || type === 'BOOKMARK') return;
          if (type === 'DELETED') present.delete(name);
          else present.add(name);
          if (present.size === 0) finish(() => resolve('empty'));
        },
        (err: unknown) => {
          if (settled) return;
          const status = statusCodeOf(err);
          if (status === 401 || status === 403 || status === 404) return finish(() => reject(kubeError(err, 'pods', namespace)));
          finish(() => resolve('relist'));
        },
      )
      .then((c) => {
        controller = c;
        if (settled) c.abort();
      })
      .catch((err: unknown) => finish(() => reject(kubeError(err, 'pods', namespace))));
  });
}

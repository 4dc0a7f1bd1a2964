/** The parts of Knative and Kubernetes objects discovery reads, and pure readers over them (no API client). */
import { LABELS } from './constants.js';

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

export interface PodObject {
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

/** Node ids whose trainer has a ready pod that is not terminating: a request reaches a running process (no cold start). */
export function warmTrainerNodes(nodes: readonly EdgeNodeStatus[]): number[] {
  return nodes.filter((n) => (n.trainer?.readyPods ?? 0) > 0).map((n) => n.nodeId);
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

import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  KubeDiscoveryError,
  discoverTrainers,
  edgeNodeStatus,
  edgeNodesFromLists,
  kubeError,
  loadKubeClient,
  trainersFromList,
  waitForScaleToZero,
} from '../services/kube/discovery.js';
import { runKubeStatusCommand } from '../services/cli/kube-commands.js';

function captureIO() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } } };
}

// @kubernetes/client-node is pinned to 1.x, which runs on Node 20 (2.x needs Node >= 22.19).

// ---------------------------------------------------------------------------------------
// A fake Kubernetes API server: just the calls discovery makes, in the real JSON shapes.
// ---------------------------------------------------------------------------------------

type Obj = Record<string, any>;
const TOKEN = 'test-token';

function ksvc(name: string, role: 'trainer' | 'serving', node: number, ready: boolean, extra: Obj = {}): Obj {
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: 'edgefl',
      resourceVersion: '10',
      labels: { 'app.kubernetes.io/part-of': 'edgefl', 'edgefl.dev/role': role, 'edgefl.dev/node-id': String(node) },
    },
    spec: { template: { spec: { containers: [{ image: 'ghcr.io/edgefl/edgefl:latest' }] } } },
    status: {
      observedGeneration: 1,
      url: `http://${name}.edgefl.svc.cluster.local`,
      address: { url: `http://${name}.edgefl.svc.cluster.local` },
      latestCreatedRevisionName: `${name}-00002`,
      latestReadyRevisionName: ready ? `${name}-00002` : `${name}-00001`,
      conditions: [
        { type: 'ConfigurationsReady', status: ready ? 'True' : 'False', lastTransitionTime: '2026-01-01T00:00:00Z' },
        ready
          ? { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z' }
          : { type: 'Ready', status: 'False', reason: 'RevisionMissing', message: 'Configuration is waiting for a Revision to become ready.', lastTransitionTime: '2026-01-01T00:00:00Z' },
        { type: 'RoutesReady', status: ready ? 'True' : 'Unknown', lastTransitionTime: '2026-01-01T00:00:00Z' },
      ],
      traffic: [{ revisionName: `${name}-00001`, latestRevision: true, percent: 100 }],
    },
    ...extra,
  };
}

function pod(name: string, service: string, role: string, ready = true, terminating = false): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'edgefl',
      resourceVersion: '20',
      labels: { 'serving.knative.dev/service': service, 'edgefl.dev/role': role, 'app.kubernetes.io/part-of': 'edgefl' },
      ...(terminating ? { deletionTimestamp: '2026-01-01T00:00:05Z' } : {}),
    },
    spec: { containers: [{ name: 'user-container', image: 'x' }] },
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

/** equality (`k=v`), existence (`k`) and set (`k in (a,b)`) requirements, comma-separated. */
function selectorMatches(selector: string | null, labels: Record<string, string> = {}): boolean {
  if (!selector) return true;
  const reqs = selector.match(/[^,(]+(\([^)]*\))?/g) ?? [];
  return reqs.every((raw) => {
    const req = raw.trim();
    const inMatch = /^(\S+)\s+in\s+\(([^)]*)\)$/.exec(req);
    if (inMatch) return inMatch[2]!.split(',').map((s) => s.trim()).includes(labels[inMatch[1]!] ?? '\0');
    const eq = /^([^=!]+)==?(.*)$/.exec(req);
    if (eq) return labels[eq[1]!] === eq[2];
    return req in labels;
  });
}

function status(res: http.ServerResponse, code: number, reason: string, message: string, details?: Obj) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details, code }));
}

interface WatchScript {
  /** Events sent (with delays) after a watch connects; `end` closes the stream early. */
  steps: Array<{ delayMs: number; type?: string; object?: Obj; end?: boolean; apply?: () => void }>;
}

class FakeKubeApi {
  services: Obj[] = [];
  pods: Obj[] = [];
  watchScripts = new Map<string, WatchScript[]>();
  requests: string[] = [];
  private server = http.createServer((req, res) => this.handle(req, res));
  private open = new Set<http.ServerResponse>();
  port = 0;

  async start() {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop() {
    for (const res of this.open) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url!, 'http://x');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return status(res, 401, 'Unauthorized', 'Unauthorized');
    const selector = url.searchParams.get('labelSelector');
    let m: RegExpExecArray | null;

    if ((m = /^\/apis\/serving\.knative\.dev\/v1\/namespaces\/([^/]+)\/services(?:\/([^/]+))?$/.exec(url.pathname))) {
      const [, ns, name] = m;
      if (ns === 'no-crd') {
        // What the apiserver answers for a group/resource it does not serve: not a Status object.
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        return res.end('404 page not found\n');
      }
      if (ns === 'no-rbac') {
        return status(res, 403, 'Forbidden',
          `services.serving.knative.dev is forbidden: User "system:serviceaccount:no-rbac:edgefl-aggregator" cannot list resource "services" in API group "serving.knative.dev" in the namespace "no-rbac"`,
          { group: 'serving.knative.dev', kind: 'services' });
      }
      const inNs = this.services.filter((s) => s.metadata.namespace === ns);
      if (name) {
        const found = inNs.find((s) => s.metadata.name === name);
        if (!found) return status(res, 404, 'NotFound', `services.serving.knative.dev "${name}" not found`, { name, group: 'serving.knative.dev', kind: 'services' });
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(found));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({
        apiVersion: 'serving.knative.dev/v1',
        kind: 'ServiceList',
        metadata: { resourceVersion: '100', continue: '' },
        items: inNs.filter((s) => selectorMatches(selector, s.metadata.labels)),
      }));
    }

    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname))) {
      const ns = m[1]!;
      if (ns === 'no-rbac') {
        return status(res, 403, 'Forbidden', `pods is forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "no-rbac"`, { kind: 'pods' });
      }
      const items = () => this.pods.filter((p) => p.metadata.namespace === ns && selectorMatches(selector, p.metadata.labels));
      if (url.searchParams.get('watch') !== 'true') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '200' }, items: items() }));
      }
      // Watch: newline-delimited {"type","object"} events over a chunked response.
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      this.open.add(res);
      res.on('close', () => this.open.delete(res));
      const script = this.watchScripts.get(selector ?? '')?.shift();
      let t = 0;
      for (const step of script?.steps ?? []) {
        t += step.delayMs;
        setTimeout(() => {
          if (res.destroyed || res.writableEnded) return;
          step.apply?.();
          if (step.type) res.write(JSON.stringify({ type: step.type, object: step.object }) + '\n');
          if (step.end) res.end();
        }, t);
      }
      return; // otherwise keep the stream open, like a quiet watch
    }
    status(res, 404, 'NotFound', 'the server could not find the requested resource');
  }
}

// ---------------------------------------------------------------------------------------
// Always-run tests: pure parsing, error mapping, and the fake server's own protocol.
// ---------------------------------------------------------------------------------------

describe('discovery helpers (no API client needed)', () => {
  it('trainersFromList reads status.url and the Ready condition, sorted by node id', () => {
    const items = [ksvc('edgefl-trainer-2', 'trainer', 2, false), ksvc('edgefl-trainer-0', 'trainer', 0, true), { metadata: { name: 'stray' } }];
    items[1]!.status.url = 'http://edgefl-trainer-0.edgefl.example.com';
    expect(trainersFromList(items)).toEqual([
      { nodeId: 0, name: 'edgefl-trainer-0', url: 'http://edgefl-trainer-0.edgefl.example.com', ready: true },
      { nodeId: 2, name: 'edgefl-trainer-2', url: 'http://edgefl-trainer-2.edgefl.svc.cluster.local', ready: false },
    ]);
    const noStatus = ksvc('edgefl-trainer-1', 'trainer', 1, true);
    delete noStatus.status;
    expect(trainersFromList([noStatus])).toEqual([{ nodeId: 1, name: 'edgefl-trainer-1', url: null, ready: false }]);
  });

  it('edgeNodesFromLists groups services per node and counts pods by Knative service label', () => {
    const services = [ksvc('edgefl-trainer-0', 'trainer', 0, true), ksvc('edgefl-serving-0', 'serving', 0, true), ksvc('edgefl-serving-1', 'serving', 1, false)];
    const pods = [
      pod('s0-a', 'edgefl-serving-0', 'serving'),
      pod('s0-b', 'edgefl-serving-0', 'serving', false),
      pod('s0-c', 'edgefl-serving-0', 'serving', true, true),
      pod('other', 'unrelated', 'serving'),
    ];
    const nodes = edgeNodesFromLists(services, pods);
    expect(nodes.map((n) => n.nodeId)).toEqual([0, 1]);
    expect(nodes[0]!.trainer).toMatchObject({ name: 'edgefl-trainer-0', ready: true, pods: 0, readyPods: 0, latestReadyRevisionName: 'edgefl-trainer-0-00002' });
    expect(nodes[0]!.serving).toMatchObject({ name: 'edgefl-serving-0', pods: 3, readyPods: 1 });
    expect(nodes[1]!.trainer).toBeNull();
    expect(nodes[1]!.serving).toMatchObject({ ready: false, reason: expect.stringContaining('RevisionMissing'), latestReadyRevisionName: 'edgefl-serving-1-00001' });
  });

  it('kubeError maps 403 to an RBAC hint and a list 404 to a missing CRD', () => {
    expect(kubeError({ code: 403, body: '{}' }, 'services.serving.knative.dev', 'edgefl').message).toBe(
      'RBAC: the service account cannot list services.serving.knative.dev in edgefl',
    );
    expect(kubeError({ statusCode: 403 }, 'pods', 'ns1').message).toBe('RBAC: the service account cannot list pods in ns1');
    expect(kubeError({ code: 404 }, 'services.serving.knative.dev', 'edgefl').message).toMatch(/^Knative Serving CRD not installed/);
    expect(kubeError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'pods', 'x').message).toMatch(/ECONNREFUSED/);
    expect(kubeError({ code: 500 }, 'pods', 'x')).toBeInstanceOf(KubeDiscoveryError);
  });

  it('a client-node load failure becomes a KubeClientUnavailableError naming the Node requirement', async () => {
    vi.resetModules();
    vi.doMock('@kubernetes/client-node', () => {
      throw new TypeError("Cannot read properties of undefined (reading 'bind')");
    });
    try {
      const fresh = await import('../services/kube/discovery.js');
      const err = await fresh.loadKubeClient().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(fresh.KubeClientUnavailableError);
      expect((err as Error).message).toMatch(/^@kubernetes\/client-node could not be loaded on Node /);
      // Callers see the same clear error, not a TypeError from deep inside undici.
      await expect(fresh.discoverTrainers({} as never, 'edgefl')).rejects.toThrow(/could not be loaded/);
    } finally {
      vi.doUnmock('@kubernetes/client-node');
      vi.resetModules();
    }
  });

  it('status --kube: usage handling needs no cluster', async () => {
    const help = captureIO();
    expect(await runKubeStatusCommand(['--kube', '--help'], help.io)).toBe(0);
    expect(help.out.join('')).toMatch(/--namespace/);
    const bad = captureIO();
    expect(await runKubeStatusCommand(['--bogus'], bad.io)).toBe(2);
  });

  describe('fake API server (protocol sanity, so the client suite below tests discovery, not the fake)', () => {
    const api = new FakeKubeApi();
    beforeAll(() => api.start());
    afterAll(() => api.stop());
    const get = (p: string, token = TOKEN) => fetch(`http://127.0.0.1:${api.port}${p}`, { headers: { authorization: `Bearer ${token}` } });

    it('lists with label selectors, answers Status bodies, streams watch events', async () => {
      api.services = [ksvc('edgefl-trainer-0', 'trainer', 0, true), ksvc('edgefl-serving-0', 'serving', 0, true)];
      api.pods = [pod('p1', 'edgefl-trainer-0', 'trainer')];
      const list = await (await get('/apis/serving.knative.dev/v1/namespaces/edgefl/services?labelSelector=edgefl.dev%2Frole%3Dtrainer')).json();
      expect(list.items.map((s: Obj) => s.metadata.name)).toEqual(['edgefl-trainer-0']);
      const both = await (await get(`/apis/serving.knative.dev/v1/namespaces/edgefl/services?labelSelector=${encodeURIComponent('app.kubernetes.io/part-of=edgefl,edgefl.dev/role in (trainer,serving)')}`)).json();
      expect(both.items).toHaveLength(2);
      expect((await get('/apis/serving.knative.dev/v1/namespaces/no-rbac/services')).status).toBe(403);
      expect(await (await get('/apis/serving.knative.dev/v1/namespaces/no-crd/services')).text()).toBe('404 page not found\n');
      expect((await get('/api/v1/namespaces/edgefl/pods', 'wrong')).status).toBe(401);

      api.watchScripts.set('x=y', [{ steps: [{ delayMs: 5, type: 'DELETED', object: pod('p1', 'x', 'y') }, { delayMs: 5, end: true }] }]);
      const watch = await (await get('/api/v1/namespaces/edgefl/pods?watch=true&labelSelector=x%3Dy')).text();
      expect(watch.trim().split('\n').map((l) => JSON.parse(l).type)).toEqual(['DELETED']);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Through @kubernetes/client-node against the fake server.
// ---------------------------------------------------------------------------------------

describe('discovery through @kubernetes/client-node', () => {
  const api = new FakeKubeApi();
  let kc: import('@kubernetes/client-node').KubeConfig;

  beforeAll(async () => {
    await api.start();
    const { KubeConfig } = await loadKubeClient();
    kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${api.port}`, skipTLSVerify: true }],
      users: [{ name: 'tester', token: TOKEN }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tester', namespace: 'edgefl' }],
      currentContext: 'fake',
    });
  });
  afterAll(() => api.stop());
  beforeEach(() => {
    api.requests = [];
    api.watchScripts.clear();
    api.services = [
      ksvc('edgefl-trainer-1', 'trainer', 1, false),
      ksvc('edgefl-trainer-0', 'trainer', 0, true),
      ksvc('edgefl-serving-0', 'serving', 0, true),
      ksvc('edgefl-serving-1', 'serving', 1, true),
      ksvc('edgefl-trainer-0', 'trainer', 0, true, { metadata: { ...ksvc('edgefl-trainer-0', 'trainer', 0, true).metadata, namespace: 'elsewhere' } }),
    ];
    api.pods = [
      pod('edgefl-serving-0-00002-deployment-a', 'edgefl-serving-0', 'serving'),
      pod('edgefl-serving-0-00002-deployment-b', 'edgefl-serving-0', 'serving', false),
      pod('edgefl-trainer-0-00002-deployment-a', 'edgefl-trainer-0', 'trainer'),
    ];
  });

  it('discoverTrainers lists trainer Knative Services by label with url and readiness', async () => {
    expect(await discoverTrainers(kc, 'edgefl')).toEqual([
      { nodeId: 0, name: 'edgefl-trainer-0', url: 'http://edgefl-trainer-0.edgefl.svc.cluster.local', ready: true },
      { nodeId: 1, name: 'edgefl-trainer-1', url: 'http://edgefl-trainer-1.edgefl.svc.cluster.local', ready: false },
    ]);
    expect(api.requests[0]).toMatch(/^GET \/apis\/serving\.knative\.dev\/v1\/namespaces\/edgefl\/services\?.*labelSelector=edgefl\.dev%2Frole%3Dtrainer/);
  });

  it('edgeNodeStatus reports services, readiness, revisions and pod counts per node', async () => {
    const nodes = await edgeNodeStatus(kc, 'edgefl');
    expect(nodes).toHaveLength(2);
    expect(nodes[0]).toMatchObject({
      nodeId: 0,
      trainer: { name: 'edgefl-trainer-0', ready: true, pods: 1, readyPods: 1, latestReadyRevisionName: 'edgefl-trainer-0-00002' },
      serving: { name: 'edgefl-serving-0', ready: true, pods: 2, readyPods: 1 },
    });
    expect(nodes[1]).toMatchObject({ nodeId: 1, trainer: { ready: false, pods: 0, latestReadyRevisionName: 'edgefl-trainer-1-00001' }, serving: { pods: 0 } });
  });

  it('403 from the API becomes an RBAC message', async () => {
    await expect(discoverTrainers(kc, 'no-rbac')).rejects.toThrow('RBAC: the service account cannot list services.serving.knative.dev in no-rbac');
    await expect(edgeNodeStatus(kc, 'no-rbac')).rejects.toThrow(/^RBAC: /);
  });

  it('404 for the resource type says the Knative CRD is missing', async () => {
    await expect(discoverTrainers(kc, 'no-crd')).rejects.toThrow(/Knative Serving CRD not installed/);
    await expect(waitForScaleToZero(kc, 'no-crd', 'edgefl-trainer-0', 1000)).rejects.toThrow(/Knative Serving CRD not installed/);
  });

  it('waitForScaleToZero returns at once when no pods exist, and rejects an unknown service', async () => {
    const before = api.requests.length;
    // Resolving at all proves it did not wait out its timeout (that rejects); and it opened no watch.
    await waitForScaleToZero(kc, 'edgefl', 'edgefl-trainer-1', 1000);
    expect(api.requests.slice(before).filter((q) => q.includes('watch=true'))).toEqual([]);
    await expect(waitForScaleToZero(kc, 'edgefl', 'edgefl-trainer-9', 1000)).rejects.toThrow('Knative Service edgefl-trainer-9 not found in edgefl');
  });

  it('waitForScaleToZero follows the pod watch until the last pod is deleted', async () => {
    const [a, b] = api.pods.filter((p) => p.metadata.labels['serving.knative.dev/service'] === 'edgefl-serving-0');
    const gone = (name: string) => () => (api.pods = api.pods.filter((p) => p.metadata.name !== name));
    api.watchScripts.set('serving.knative.dev/service=edgefl-serving-0', [
      {
        steps: [
          { delayMs: 30, type: 'MODIFIED', object: { ...a, metadata: { ...a!.metadata, deletionTimestamp: '2026-01-01T00:00:05Z' } } },
          { delayMs: 30, type: 'DELETED', object: a, apply: gone(a!.metadata.name) },
          { delayMs: 30, type: 'BOOKMARK', object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: '300' } } },
          { delayMs: 30, type: 'DELETED', object: b, apply: gone(b!.metadata.name) },
        ],
      },
    ]);
    const r = await waitForScaleToZero(kc, 'edgefl', 'edgefl-serving-0', 5000);
    expect(r.waitedMs).toBeGreaterThanOrEqual(100);
    const watches = api.requests.filter((q) => q.includes('watch=true'));
    expect(watches).toHaveLength(1);
    expect(watches[0]).toMatch(/resourceVersion=200/);
  });

  it('waitForScaleToZero re-lists when the watch closes early', async () => {
    api.watchScripts.set('serving.knative.dev/service=edgefl-trainer-0', [
      { steps: [{ delayMs: 20, apply: () => (api.pods = api.pods.filter((p) => p.metadata.labels['serving.knative.dev/service'] !== 'edgefl-trainer-0')), end: true }] },
    ]);
    await waitForScaleToZero(kc, 'edgefl', 'edgefl-trainer-0', 5000);
    const lists = api.requests.filter((q) => q.startsWith('GET /api/v1/namespaces/edgefl/pods?') && !q.includes('watch=true'));
    expect(lists.length).toBeGreaterThanOrEqual(2);
    expect(api.requests.filter((q) => q.includes('watch=true'))).toHaveLength(1);
  });

  it('waitForScaleToZero times out naming the pods still present', async () => {
    // The message says it gave up at its own timeout (what it measured, not this test's clock).
    await expect(waitForScaleToZero(kc, 'edgefl', 'edgefl-serving-0', 300)).rejects.toThrow(
      /timed out after 300 ms waiting for edgefl-serving-0 in edgefl to scale to zero \(2 pod\(s\) left: edgefl-serving-0-00002-deployment-a/,
    );
  });

  it('edgefl status --kube prints a table (and --json) from $KUBECONFIG', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgefl-kubeconfig-'));
    const file = path.join(dir, 'config');
    await fs.writeFile(file, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'fake',
      clusters: [{ name: 'fake', cluster: { server: `http://127.0.0.1:${api.port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'tester', user: { token: TOKEN } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'tester' } }],
    }));
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = file;
    try {
      const table = captureIO();
      expect(await runKubeStatusCommand(['--kube', '--namespace', 'edgefl'], table.io), table.err.join('')).toBe(0);
      const lines = table.out.join('').trim().split('\n');
      expect(lines[0]).toMatch(/^NODE\s+ROLE\s+SERVICE\s+READY\s+LATEST REVISION\s+PODS\s+URL$/);
      expect(lines.find((l) => l.includes('edgefl-serving-0'))).toMatch(/serving\s+edgefl-serving-0\s+True\s+edgefl-serving-0-00002\s+1\/2\s+http:/);
      expect(lines.find((l) => l.includes('edgefl-trainer-1'))).toMatch(/False \(RevisionMissing/);
      const json = captureIO();
      expect(await runKubeStatusCommand(['--json', '--namespace', 'edgefl'], json.io)).toBe(0);
      expect(JSON.parse(json.out.join('')).nodes).toHaveLength(2);
      const denied = captureIO();
      expect(await runKubeStatusCommand(['--namespace', 'no-rbac'], denied.io)).toBe(1);
      expect(denied.err.join('')).toMatch(/RBAC: the service account cannot list services\.serving\.knative\.dev in no-rbac/);
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

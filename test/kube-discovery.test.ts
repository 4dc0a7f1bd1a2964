import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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
import { FakeKubeApi, TOKEN, ksvc, pod, type Obj } from './helpers/fake-kube-api.js';

function captureIO() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } } };
}

// @kubernetes/client-node is pinned to 1.x, which runs on Node 20 (2.x needs Node >= 22.19).

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

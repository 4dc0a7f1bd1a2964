import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeWarmth, readClusterWarmth } from '../aggregator/kube-warmth.js';
import { renderManifests } from '../services/kube/manifests.js';
import { createLogger } from '../services/shared/log.js';
import { FakeKubeApi, TOKEN, ksvc, pod } from './helpers/fake-kube-api.js';

/**
 * Warm-aware selection on Knative: the aggregator reads which trainers have a ready pod from the
 * Kubernetes API (a fake API server here, through @kubernetes/client-node and a kubeconfig, as
 * in a cluster), and keeps that view fresh without trusting it forever.
 */
describe('which trainers are warm, from the cluster', () => {
  const api = new FakeKubeApi();
  let dir: string;
  const savedKubeconfig = process.env.KUBECONFIG;

  beforeAll(async () => {
    await api.start();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgefl-kube-warmth-'));
    const kubeconfig = path.join(dir, 'config');
    await fs.writeFile(kubeconfig, [
      'apiVersion: v1', 'kind: Config', 'current-context: fake',
      `clusters: [{name: fake, cluster: {server: "http://127.0.0.1:${api.port}", insecure-skip-tls-verify: true}}]`,
      `users: [{name: tester, user: {token: ${TOKEN}}}]`,
      'contexts: [{name: fake, context: {cluster: fake, user: tester, namespace: edgefl}}]',
    ].join('\n'));
    process.env.KUBECONFIG = kubeconfig;
  });
  afterAll(async () => {
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
    await api.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a trainer is warm when its Knative Service has a ready pod that is not terminating; serving pods do not count', async () => {
    api.services = [0, 1, 2, 3].flatMap((n) => [ksvc(`edgefl-trainer-${n}`, 'trainer', n, true), ksvc(`edgefl-serving-${n}`, 'serving', n, true)]);
    api.pods = [
      pod('edgefl-trainer-0-00001-deployment-a', 'edgefl-trainer-0', 'trainer'),
      pod('edgefl-trainer-1-00001-deployment-a', 'edgefl-trainer-1', 'trainer', false),
      pod('edgefl-trainer-2-00001-deployment-a', 'edgefl-trainer-2', 'trainer', true, true),
      pod('edgefl-serving-3-00001-deployment-a', 'edgefl-serving-3', 'serving'),
      pod('edgefl-trainer-3-00001-deployment-b', 'edgefl-trainer-3', 'trainer'),
    ];
    expect((await readClusterWarmth('edgefl')).sort()).toEqual(['node-0', 'node-3']);
    api.pods = [];
    expect(await readClusterWarmth('edgefl')).toEqual([]);
    await expect(readClusterWarmth('no-rbac')).rejects.toThrow(/RBAC/);
  });

  it('the aggregator Role the manifests grant lists pods, and still nothing more than list', () => {
    const role = renderManifests({ nodes: 1, namespace: 'edgefl', image: 'edgefl:test', eventing: false }).find((o) => (o as { kind?: string }).kind === 'Role' && (o as { metadata: { name: string } }).metadata.name === 'edgefl-aggregator') as { rules: { resources: string[]; verbs: string[] }[] };
    expect(role.rules.find((r) => r.resources.includes('pods'))?.verbs).toEqual(['list']);
    expect(role.rules.flatMap((r) => r.verbs)).toEqual(['list', 'list']);
  });
});

describe('kubeWarmth keeps the view fresh', () => {
  it('serves the last read, keeps it through failures until it is too old, warns once per failure streak', async () => {
    let clock = 0;
    let answer: () => Promise<string[]> = async () => ['node-1'];
    const lines: string[] = [];
    const w = kubeWarmth(() => answer(), createLogger({}, 'info', (l) => lines.push(l)), { refreshMs: 60_000, maxAgeMs: 30_000, now: () => clock });
    try {
      expect([...w.source.warm()]).toEqual([]);
      expect(w.source.capacity).toBeUndefined();
      await w.refresh();
      expect([...w.source.warm()]).toEqual(['node-1']);

      answer = async () => {
        throw new Error('apiserver unreachable');
      };
      clock = 20_000;
      await w.refresh();
      await w.refresh();
      expect([...w.source.warm()]).toEqual(['node-1']); // 20 s old: still trusted
      clock = 30_001;
      expect([...w.source.warm()]).toEqual([]); // stale: nothing presumed warm
      expect(lines.filter((l) => l.includes('cannot read which trainers are warm'))).toHaveLength(1);

      answer = async () => ['node-2', 'node-4'];
      await w.refresh();
      expect([...w.source.warm()].sort()).toEqual(['node-2', 'node-4']);
      expect(lines.some((l) => l.includes('readable again'))).toBe(true);
    } finally {
      w.stop();
    }
  });
});

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake Kubernetes API server for the discovery suites: just the calls discovery makes, in
 * the real JSON shapes (lists with label selectors, Status errors, chunked pod watches).
 */
export type Obj = Record<string, any>;
export const TOKEN = 'test-token';

export function ksvc(name: string, role: 'trainer' | 'serving', node: number, ready: boolean, extra: Obj = {}): Obj {
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

export function pod(name: string, service: string, role: string, ready = true, terminating = false): Obj {
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

export class FakeKubeApi {
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

/**
 * The activator's HTTP side: one loopback server whose path prefix names the node, so node i's
 * trainer URL is http://127.0.0.1:PORT/node-i (POST /node-3 reaches node 3's trainer at /).
 * A request is buffered (bounded), held while the node's trainer starts, then forwarded; GET
 * /activator answers every node's state and the cold-start record, GET /metrics Prometheus's.
 */
import { readCappedBody } from '../http/capped-body.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMetrics, type Metrics } from '../shared/metrics.js';
import { Activator, type ActivatorOptions } from './activator.js';

export interface ActivatorServer {
  activator: Activator;
  server: http.Server;
  /** http://127.0.0.1:PORT */
  url: string;
  /** Node i's trainer URL, as the aggregator invokes it. */
  nodeUrl(node: number): string;
  close(): Promise<void>;
}

/** A train request is a small CloudEvent (trainers take at most 1 MiB); anything larger is refused before it is held. */
const MAX_BODY_BYTES = 1024 * 1024;
/** Requests in the activator at once (held, queued or forwarded): bounds its memory at MAX_PENDING × MAX_BODY_BYTES. */
export const MAX_PENDING = 128;

export interface ProxyOptions {
  port?: number;
  metrics?: Metrics;
  /**
   * Checked before a cold node is woken: a reason to refuse (401), or undefined. With the invoke
   * secret, only the aggregator's signed requests may start a process (nobody else can make the
   * machine spawn trainers); the trainer still verifies the token in full.
   */
  refuseWake?: (nodeId: string, req: http.IncomingMessage) => string | undefined;
}

export async function startActivator(opts: ActivatorOptions & ProxyOptions): Promise<ActivatorServer> {
  const metrics = opts.metrics ?? createMetrics('activator');
  const activator = new Activator({
    ...opts,
    onColdStart: (e) => {
      metrics.coldStarts.inc({ outcome: e.ok ? 'ready' : 'failed' });
      metrics.coldStartSeconds.observe(e.ms / 1000);
      opts.onColdStart?.(e);
    },
    onActive: (n) => {
      metrics.activeTrainers.set(n);
      opts.onActive?.(n);
    },
  });
  let pending = 0;
  const server = http.createServer((req, res) => {
    if (pending >= MAX_PENDING) return sendError(res, 503, 'activator_busy', `${MAX_PENDING} requests already waiting or running`, { 'retry-after': '1', connection: 'close' });
    pending++;
    res.once('close', () => pending--);
    void route(activator, metrics, req, res, opts.refuseWake);
  });
  // Training can outlast Node's default five-minute request timeout; the caller's deadline bounds it.
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    activator,
    server,
    url,
    nodeUrl: (node) => `${url}/node-${node}`,
    async close() {
      await activator.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ error: { code, message } }));
}

async function route(activator: Activator, metrics: Metrics, req: http.IncomingMessage, res: http.ServerResponse, refuseWake?: ProxyOptions['refuseWake']): Promise<void> {
  const { pathname, search } = new URL(req.url ?? '/', 'http://activator');
  if (req.method === 'GET' && pathname === '/activator') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(activator.snapshot()));
  if (req.method === 'GET' && pathname === '/metrics') return void res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(await metrics.registry.metrics());
  const match = /^\/node-(\d{1,6})(\/.*)?$/.exec(pathname);
  const node = match ? Number(match[1]) : -1;
  if (!activator.has(node)) return sendError(res, 404, 'unknown_node', `no edge node at ${pathname.slice(0, 100)}`);
  const refused = refuseWake?.(`node-${node}`, req);
  if (refused) return sendError(res, 401, 'unauthorized', `not waking node-${node}: ${refused}`, { 'www-authenticate': 'Bearer' });
  let body: Buffer;
  try {
    body = await readBody(req, MAX_BODY_BYTES);
  } catch (e) {
    return sendError(res, 413, 'payload_too_large', (e as Error).message);
  }
  try {
    const status = await activator.invoke(node, (instance) => forward(instance.url + (match![2] ?? '/') + search, req, body, res));
    metrics.activatorInvocations.inc({ outcome: status < 500 ? 'answered' : 'failed' });
  } catch (e) {
    metrics.activatorInvocations.inc({ outcome: 'failed' });
    // 503 + Retry-After: the invoker retries, and the next try starts the node afresh.
    sendError(res, res.headersSent ? 502 : 503, 'trainer_unavailable', `node-${node}: ${(e as Error).message}`, { 'retry-after': '1' });
  }
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return readCappedBody(req, limit, () => new Error(`request body over ${limit} bytes`));
}

/** Forwards one buffered request and streams the answer back; resolves with its status once it is sent. */
function forward(target: string, req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, 'content-length': String(body.length) };
    delete headers.host;
    delete headers['transfer-encoding'];
    const upstream = http.request(target, { method: req.method, headers, agent: false }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
      answer.on('end', () => resolve(answer.statusCode ?? 502));
      answer.on('error', reject);
    });
    // The trainer died mid-request (killed, crashed): nothing it was doing was stored.
    upstream.on('error', reject);
    // The caller gave up (its deadline): stop forwarding, but the trainer is fine (499, nginx's "client closed").
    res.on('close', () => {
      if (res.writableFinished) return;
      upstream.removeAllListeners('error').on('error', () => {});
      upstream.destroy();
      resolve(499);
    });
    upstream.end(body);
  });
}

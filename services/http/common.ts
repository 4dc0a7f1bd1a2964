import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Express, RequestHandler } from 'express';
import type { Logger } from '../shared/log.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { isConnectionError } from '../store/database.js';
import { httpMetrics, mountMetrics, type Metrics } from '../shared/metrics.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

/** The request's id: the X-Request-Id a proxy set, when it is a plain token, else a new one. */
export function requestIdOf(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && /^[\w.-]{1,100}$/.test(incoming) ? incoming : randomUUID();
}

/** A request id (taken from X-Request-Id when a proxy set one) that every log line of the request carries. */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    req.id = requestIdOf(req.headers['x-request-id']);
    req.log = log.child({ request_id: req.id });
    res.setHeader('X-Request-Id', req.id);
    next();
  };
}

/** Headers every response of every service carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

export const securityHeaders: RequestHandler = (_req, res, next) => {
  for (const name in SECURITY_HEADERS) res.setHeader(name, SECURITY_HEADERS[name]!);
  next();
};

/** Common front of every service: ids, headers, metrics. */
export function applyCommonMiddleware(app: Express, log: Logger, metrics: Metrics): void {
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestContext(log));
  app.use(securityHeaders);
  app.use(httpMetrics(metrics));
  mountMetrics(app, metrics);
}

export function applyErrorHandlers(app: Express, log: Logger): void {
  app.use(notFoundHandler);
  app.use(errorHandler((err, req) => log.error('unhandled error', { err, method: req.method, path: req.path }), isConnectionError));
}

export interface ConnectionState {
  inFlight: number;
  lastData: number;
}

/**
 * Follows every connection's in-flight requests and last received byte, from the moment the
 * server starts, so a graceful close can tell a truly idle keep-alive connection from one
 * whose request is still in the socket buffer. (http.Server#closeIdleConnections cannot:
 * an unread request looks idle to it.)
 */
export function trackConnections(server: Server): Map<Socket, ConnectionState> {
  const connections = new Map<Socket, ConnectionState>();
  server.on('connection', (socket: Socket) => {
    const state = { inFlight: 0, lastData: Date.now() };
    connections.set(socket, state);
    socket.on('data', () => (state.lastData = Date.now()));
    socket.once('close', () => connections.delete(socket));
  });
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const state = connections.get(req.socket);
    if (!state) return;
    state.inFlight++;
    res.once('close', () => {
      state.inFlight--;
      state.lastData = Date.now();
    });
  });
  return connections;
}

/**
 * Resolves when the server has closed; every request it has accepted is answered first
 * (Knative sends SIGTERM and keeps routing in-flight requests to the pod). New connections
 * are refused at once, responses from now on carry `Connection: close`, and a connection is
 * ended only after it has carried no request and no data for `quietMs`.
 */
export function closeGracefully(server: Server, connections: Map<Socket, ConnectionState>, timeoutMs = 20_000, quietMs = 1000): Promise<void> {
  return new Promise((resolve) => {
    server.prependListener('request', (_req, res: ServerResponse) => {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    });
    const sweep = setInterval(() => {
      const now = Date.now();
      for (const [socket, state] of connections) if (state.inFlight === 0 && now - state.lastData >= quietMs) socket.destroy();
    }, Math.min(250, quietMs));
    const force = setTimeout(() => {
      server.closeAllConnections();
      finish();
    }, timeoutMs);
    force.unref();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(sweep);
      clearTimeout(force);
      resolve();
    };
    // net.Server#close, not http.Server#close: the latter drops "idle" connections immediately.
    net.Server.prototype.close.call(server, finish);
  });
}

import { randomUUID } from 'node:crypto';
import type { Express, RequestHandler } from 'express';
import type { Logger } from './log.js';
import { errorHandler, notFoundHandler } from './http-errors.js';
import { httpMetrics, mountMetrics, type Metrics } from './metrics.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

/** A request id (taken from X-Request-Id when a proxy set one) that every log line of the request carries. */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    req.id = incoming && /^[\w.-]{1,100}$/.test(incoming) ? incoming : randomUUID();
    req.log = log.child({ request_id: req.id });
    res.setHeader('X-Request-Id', req.id);
    next();
  };
}

export const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
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
  app.use(errorHandler((err, req) => log.error('unhandled error', { err, method: req.method, path: req.path })));
}

/** Resolves when the server closes; in-flight requests finish first (Knative sends SIGTERM, then waits). */
export function closeGracefully(server: import('node:http').Server, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, timeoutMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

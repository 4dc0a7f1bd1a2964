import type { NextFunction, Request, Response } from 'express';
import type { IncomingHttpHeaders } from 'node:http';
import { bearerToken, constantTimeEqual } from '../shared/auth.js';
import { HttpError, fromParserError } from '../http/errors.js';
import type { Logger } from '../shared/log.js';
import { InvalidInput, ModelNotFound, ModelNotReady, Overloaded, ServingError, TooLarge, UnsupportedMedia, VersionNotLoaded } from './errors.js';

/**
 * The HTTP edge of the serving function: the one place where the domain errors of
 * errors.ts become statuses. Each protocol renders the result in its own error body.
 */
export interface EdgeError {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
}

export function httpStatusOf(err: ServingError): number {
  if (err instanceof ModelNotFound || err instanceof VersionNotLoaded) return 404;
  if (err instanceof ModelNotReady) return 503;
  if (err instanceof TooLarge) return 413;
  if (err instanceof UnsupportedMedia) return 415;
  if (err instanceof Overloaded) return 429;
  if (err instanceof InvalidInput) return 400;
  return 400;
}

/** Any error a serving route can meet, as status + code + message; undefined for a bug (a 500). */
export function toEdgeError(err: unknown): EdgeError | undefined {
  if (err instanceof ServingError) {
    const retry: Record<string, string> = err instanceof Overloaded || err instanceof ModelNotReady ? { 'Retry-After': String(err.retryAfterS) } : {};
    return { status: httpStatusOf(err), code: err.code, message: err.message, headers: retry };
  }
  const known = err instanceof HttpError ? err : fromParserError(err);
  return known && { status: known.status, code: known.code, message: known.message, headers: known.headers };
}

/** Any error as the edge answers it; a bug (no known error) is logged and becomes a 500 that echoes nothing. */
export function edgeErrorOf(err: unknown, log: Logger, method: string | undefined, path: string): EdgeError {
  const e = toEdgeError(err) ?? { status: 500, code: 'internal', message: 'internal error; see the service log', headers: {} };
  if (e.status >= 500 && !(err instanceof ModelNotReady)) log.error('unhandled error', { err, method, path });
  return e;
}

/** An error handler rendering every error with `render` (a protocol's error body); bugs are logged and become 500. */
export function protocolErrors(log: Logger, render: (e: EdgeError) => unknown) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    const e = edgeErrorOf(err, log, req.method, req.path);
    res.status(e.status).set(e.headers).json(render(e));
  };
}

/** Undefined when no API keys are configured or the request presents one of them (Authorization: Bearer <key> or X-API-Key), else the 401. */
export function apiKeyRefusal(apiKeys: string[] | undefined, headers: IncomingHttpHeaders): HttpError | undefined {
  if (!apiKeys?.length) return undefined;
  const xApiKey = headers['x-api-key'];
  const presented = bearerToken(headers.authorization) ?? (typeof xApiKey === 'string' ? xApiKey : undefined);
  if (presented !== undefined && apiKeys.some((k) => constantTimeEqual(k, presented))) return undefined;
  return new HttpError(401, 'unauthorized', 'a valid API key is required (Authorization: Bearer <key> or X-API-Key)', { 'WWW-Authenticate': 'Bearer' });
}

/** API keys, when configured: Authorization: Bearer <key> or X-API-Key. */
export function requireKey(apiKeys: string[] | undefined) {
  return (req: Request, _res: Response, next: NextFunction) => next(apiKeyRefusal(apiKeys, req.headers));
}

/**
 * A protocol's answer to a request, before it is written: what the route handlers of
 * tfserving.ts and oip.ts return, so that Express (sendReply) and the direct path of
 * direct-predict.ts write the same thing.
 */
export interface Reply {
  headers: Record<string, string>;
  /** A JSON body, or bytes of `type`. */
  body: { json: unknown } | { bytes: Buffer; type: string };
}

export function sendReply(res: Response, reply: Reply): void {
  res.set(reply.headers);
  if ('json' in reply.body) res.json(reply.body.json);
  else res.type(reply.body.type).send(reply.body.bytes);
}

import type { ErrorRequestHandler, RequestHandler, Response } from 'express';

/** The one error shape of every edgefl HTTP route: `{error:{code,message}}` with a 4xx/5xx status. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);
export const notFound = (code: string, message: string) => new HttpError(404, code, message);
export const conflict = (code: string, message: string) => new HttpError(409, code, message);
export const tooLarge = (code: string, message: string) => new HttpError(413, code, message);

export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

export function sendError(res: Response, err: HttpError): void {
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.status(err.status).json(errorBody(err.code, err.message));
}

/** Maps errors raised by express's own parsers (body-parser) to our shape instead of HTML pages. */
export function fromParserError(err: unknown): HttpError | undefined {
  const e = err as { type?: string; status?: number; message?: string };
  switch (e?.type) {
    case 'entity.too.large':
      return tooLarge('body_too_large', 'request body exceeds the configured limit');
    case 'entity.parse.failed':
      return badRequest('invalid_json', 'request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_encoding', e.message ?? 'unsupported body encoding');
    case 'request.aborted':
      return badRequest('request_aborted', 'client closed the request before the body arrived');
    case 'request.size.invalid':
      return badRequest('body_size_mismatch', 'request body size does not match Content-Length');
    default:
      if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new HttpError(e.status, 'bad_request', e.message ?? 'bad request');
      return undefined;
  }
}

/**
 * Last middleware of every app: known errors keep their status; anything else is logged
 * and becomes a 500 whose body never echoes internals.
 */
export function errorHandler(
  log: (err: unknown, req: { method: string; path: string }) => void,
  /** Recognises transient dependency outages (a restarting database), answered 503 + Retry-After. */
  isTransient: (err: unknown) => boolean = () => false,
): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = err instanceof HttpError ? err : fromParserError(err);
    if (res.headersSent) return;
    if (known) return sendError(res, known);
    if (isTransient(err)) {
      log(err, req);
      return sendError(res, new HttpError(503, 'unavailable', 'a dependency is unavailable; retry shortly', { 'Retry-After': '2' }));
    }
    log(err, req);
    sendError(res, new HttpError(500, 'internal', 'internal error; see the service log'));
  };
}

export const notFoundHandler: RequestHandler = (req, res) => {
  sendError(res, notFound('route_not_found', `no route for ${req.method} ${req.path}`));
};

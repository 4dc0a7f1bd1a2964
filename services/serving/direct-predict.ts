import type { IncomingMessage, ServerResponse } from 'node:http';
import { requestIdOf } from '../http/common.js';
import type { Logger } from '../shared/log.js';
import { recordRequest, type Metrics } from '../shared/metrics.js';
import { apiKeyRefusal, edgeErrorOf, type EdgeError, type Reply } from './edge.js';
import type { IdleTrim } from './idle-trim.js';
import type { ModelRef } from './predictor.js';

/**
 * The prediction routes of both protocols, answered straight from Node's request handler.
 *
 * Through Express, a 1-image prediction at 10 connections spent about 70 µs of its 347 on the
 * framework (setting up its request and response, walking the middleware and route stack,
 * `res.json`) beside 242 µs of wasm. Answered here, the 10-connection p50 went from 3.27–3.35
 * ms to 2.63–2.72 ms in the same minutes (`bench cold-warm`; 2.51 ms with none of the below).
 * Everything else a request gets from the Express app is done here too, with the same
 * functions: the request id, the security and CORS headers, the API key, the idle-trim
 * bookkeeping, the request metrics under the label Express would give the route, and errors
 * rendered by the protocol's own edge. A path these patterns do not match exactly (another
 * case, a trailing slash, a name that does not decode) goes to Express, which answers it as it
 * always has.
 */
export interface DirectRoute {
  /** The path (without its query), capturing the model's name and, where the route has one, its version. */
  pattern: RegExp;
  /** The metrics label Express gives the same route. */
  label: string;
  reply: (req: IncomingMessage, res: ServerResponse, ref: ModelRef) => Promise<Reply>;
  /** The protocol's error body. */
  render: (e: EdgeError) => unknown;
}

export interface DirectFront {
  log: Logger;
  metrics: Metrics;
  apiKeys?: string[];
  trim: IdleTrim;
  /** Headers every response of the app carries (security, CORS). */
  headers: Readonly<Record<string, string>>;
}

/** A request handler answering the routes it matches (true) and leaving every other request alone (false). */
export function directPredict(routes: readonly DirectRoute[], front: DirectFront): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST' || req.url === undefined) return false;
    const query = req.url.indexOf('?');
    const path = query < 0 ? req.url : req.url.slice(0, query);
    for (const route of routes) {
      const m = route.pattern.exec(path);
      if (!m) continue;
      const ref = decodedRef(m[1]!, m[2]);
      if (!ref) return false;
      void answer(route, ref, path, req, res, front);
      return true;
    }
    return false;
  };
}

/** The route's parameters as Express decodes them; undefined when one is not valid percent-encoding. */
function decodedRef(name: string, version: string | undefined): ModelRef | undefined {
  try {
    return { name: decodeURIComponent(name), version: version === undefined ? undefined : decodeURIComponent(version) };
  } catch {
    return undefined;
  }
}

async function answer(route: DirectRoute, ref: ModelRef, path: string, req: IncomingMessage, res: ServerResponse, front: DirectFront): Promise<void> {
  const start = process.hrtime.bigint();
  front.trim.started();
  res.once('close', () => front.trim.ended());
  let status = 200;
  let headers: Record<string, string>;
  let type: string;
  let payload: Buffer | string;
  try {
    const refusal = apiKeyRefusal(front.apiKeys, req.headers);
    if (refusal) throw refusal;
    const reply = await route.reply(req, res, ref);
    headers = reply.headers;
    if ('json' in reply.body) [type, payload] = [JSON_TYPE, JSON.stringify(reply.body.json)];
    else [type, payload] = [reply.body.type, reply.body.bytes];
  } catch (err) {
    const e = edgeErrorOf(err, front.log, req.method, path);
    [status, headers, type, payload] = [e.status, e.headers, JSON_TYPE, JSON.stringify(route.render(e))];
  }
  res.once('finish', () => recordRequest(front.metrics, 'POST', route.label, status, start));
  res.writeHead(status, {
    ...front.headers,
    'X-Request-Id': requestIdOf(req.headers['x-request-id']),
    ...headers,
    'Content-Type': type,
    'Content-Length': String(Buffer.byteLength(payload)),
  });
  res.end(payload);
}

const JSON_TYPE = 'application/json; charset=utf-8';

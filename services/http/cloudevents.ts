import { CloudEvent, HTTP, ValidationError } from 'cloudevents';
import type { IncomingHttpHeaders } from 'node:http';
import { HttpError, badRequest } from './errors.js';

/** CloudEvent types of the federation protocol. */
export const EVENT_TYPES = {
  roundTrain: 'dev.edgefl.round.train',
  updateReady: 'dev.edgefl.update.ready',
} as const;

/** Extension attribute naming the target edge node (lowercase alnum, as CloudEvents requires). */
export const NODE_EXTENSION = 'edgeflnode';
/**
 * Extension attribute carrying the invocation token when events travel through a Knative
 * Broker, which does not forward an Authorization header. The token is short-lived and
 * bound to one node, like the header form.
 */
export const AUTH_EXTENSION = 'edgeflauth';

export type EventMode = 'binary' | 'structured' | 'plain';

export interface IncomingEvent {
  mode: EventMode;
  id?: string;
  source?: string;
  /** The AUTH_EXTENSION attribute, when the event carries one. */
  auth?: string;
  data: unknown;
}

/**
 * Accepts a CloudEvent in binary mode (ce-* headers), structured mode
 * (application/cloudevents+json) or a plain JSON body carrying the same data, so the
 * same route serves Knative Eventing, the aggregator and a person with curl.
 */
export function readEvent(headers: IncomingHttpHeaders, body: Buffer | undefined, expectedType: string): IncomingEvent {
  const contentType = String(headers['content-type'] ?? '').toLowerCase();
  const text = body && body.length ? body.toString('utf8') : '';
  const isStructured = contentType.startsWith('application/cloudevents+json');
  const isBinary = headers['ce-specversion'] !== undefined;
  if (!isStructured && !isBinary) {
    if (!contentType.includes('json')) throw new HttpError(415, 'unsupported_media_type', 'send application/json, a binary-mode CloudEvent, or application/cloudevents+json');
    return { mode: 'plain', data: parseJson(text) };
  }
  if (isBinary && !contentType.includes('json')) throw new HttpError(415, 'unsupported_media_type', 'binary-mode CloudEvent data must be application/json');
  if (isStructured) parseJson(text); // a clear invalid_json before the SDK's generic error
  let event: CloudEvent<unknown>;
  try {
    const parsed = HTTP.toEvent({ headers: headers as Record<string, string>, body: text });
    if (Array.isArray(parsed)) throw badRequest('invalid_cloudevent', 'batched CloudEvents are not accepted here');
    event = parsed as CloudEvent<unknown>;
    event.validate();
  } catch (e) {
    if (e instanceof HttpError) throw e;
    const detail = e instanceof ValidationError ? `${e.message}${e.errors?.length ? `: ${JSON.stringify(e.errors).slice(0, 200)}` : ''}` : (e as Error).message;
    throw badRequest('invalid_cloudevent', `not a valid CloudEvent (${detail})`);
  }
  if (event.type !== expectedType) throw badRequest('wrong_event_type', `event type must be ${expectedType}; got ${event.type}`);
  let data: unknown = event.data;
  if (typeof data === 'string') data = parseJson(data);
  if (data === undefined && event.data_base64) data = parseJson(Buffer.from(event.data_base64, 'base64').toString('utf8'));
  const auth = (event as unknown as Record<string, unknown>)[AUTH_EXTENSION];
  return { mode: isStructured ? 'structured' : 'binary', id: event.id, source: event.source, auth: typeof auth === 'string' ? auth : undefined, data };
}

function parseJson(text: string): unknown {
  if (text.length === 0) throw badRequest('empty_body', 'request body is empty');
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('invalid_json', 'request body is not valid JSON');
  }
}

export interface OutgoingMessage {
  headers: Record<string, string>;
  body: string;
}

export function makeEvent(type: string, source: string, data: Record<string, unknown>, extensions: Record<string, string> = {}): CloudEvent<Record<string, unknown>> {
  return new CloudEvent({ type, source, datacontenttype: 'application/json', data, ...extensions });
}

/** Serialises an event for HTTP; plain-JSON callers get binary mode, whose body is just the data. */
export function encodeEvent(event: CloudEvent<Record<string, unknown>>, mode: EventMode): OutgoingMessage {
  const message = mode === 'structured' ? HTTP.structured(event) : HTTP.binary(event);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers)) headers[k] = String(v);
  const body = typeof message.body === 'string' ? message.body : JSON.stringify(message.body);
  return { headers, body };
}

import { setTimeout as timeout } from 'node:timers/promises';
import http from 'node:http';
import https from 'node:https';
import { invokeClaims, signInvokeToken } from '../services/shared/auth.js';
import { AUTH_EXTENSION, EVENT_TYPES, NODE_EXTENSION, encodeEvent, makeEvent } from '../services/http/cloudevents.js';

export interface TrainerTarget {
  nodeId: string;
  url: string;
}

export type InvokeOutcome =
  | { ok: true; updateId: number; metrics: Record<string, unknown>; attempts: number; ms: number }
  | { ok: false; reason: 'deadline' | 'rejected' | 'unreachable' | 'stopped'; status?: number; detail: string; attempts: number; ms: number };

export interface InvokeOptions {
  deadline: Date;
  secret?: string;
  signal?: AbortSignal;
  /** First retry delay; doubles up to maxBackoffMs. Cold starts take seconds, so retries must too. */
  backoffMs?: number;
  maxBackoffMs?: number;
  requestId?: string;
  /**
   * Knative Eventing mode: post the event to this Broker URL (it routes it to the node's
   * trainer by the edgeflnode attribute) and learn the outcome from the store.
   */
  brokerUrl?: string;
  /**
   * Failed attempts (a 5xx or a broken connection) before giving up ahead of the deadline
   * (default: no limit). A 429 is not a failure: the trainer or the activator is busy and says
   * when to come back, which costs nothing. The asynchronous driver allows one: it waits for no
   * particular node, so another free node takes the place of one that failed, and the failed
   * one cools down before it is asked again (async/schedule.ts).
   */
  maxFailures?: number;
  /** Broker mode: looks for the node's stored update; polled until the deadline. */
  findUpdate?: () => Promise<{ updateId: number; metrics: Record<string, unknown> } | undefined>;
}

/**
 * Sends one round's CloudEvent to one trainer and retries transport failures, 5xx and
 * 429 (honouring Retry-After) with exponential backoff until the round's deadline.
 * A 4xx other than 429 is final: the trainer understood and refused.
 */
export async function invokeTrainer(target: TrainerTarget, data: Record<string, unknown>, opts: InvokeOptions): Promise<InvokeOutcome> {
  const started = Date.now();
  let delay = opts.backoffMs ?? 500;
  let attempts = 0;
  let failures = 0;
  let last = 'no attempt made';
  let lastStatus: number | undefined;
  // Trigger filters match the bare node number (edgeflnode=0), as the manifests render them.
  const extensions: Record<string, string> = { [NODE_EXTENSION]: target.nodeId.replace(/^node-/, '') };
  if (opts.brokerUrl && opts.secret) extensions[AUTH_EXTENSION] = signInvokeToken(opts.secret, invokeClaims(target.nodeId, data), Math.min(opts.deadline.getTime() - Date.now() + 60_000, 3_600_000));
  const event = makeEvent(EVENT_TYPES.roundTrain, '/edgefl/aggregator', data, extensions);
  while (true) {
    if (opts.signal?.aborted) return { ok: false, reason: 'stopped', detail: 'run stopped', attempts, ms: Date.now() - started };
    const remaining = opts.deadline.getTime() - Date.now();
    if (remaining <= 0) return { ok: false, reason: 'deadline', status: lastStatus, detail: `deadline passed (${last})`, attempts, ms: Date.now() - started };
    attempts++;
    const msg = encodeEvent(event, 'binary');
    const headers: Record<string, string> = { ...msg.headers, 'content-type': 'application/json' };
    if (opts.secret && !opts.brokerUrl) headers.authorization = `Bearer ${signInvokeToken(opts.secret, invokeClaims(target.nodeId, data), Math.min(remaining + 60_000, 3_600_000))}`;
    if (opts.requestId) headers['x-request-id'] = opts.requestId;
    let retryAfterMs: number | undefined;
    let busy = false;
    try {
      const res = await postOnce(opts.brokerUrl ?? target.url, headers, msg.body, remaining, opts.signal);
      lastStatus = res.status;
      if (opts.brokerUrl && res.status >= 200 && res.status < 300) return awaitStoredUpdate(opts, attempts, started);
      if (res.status >= 200 && res.status < 300) {
        // A 2xx is final: a body that is not the expected JSON is a refusal, not a reason to retry until the deadline.
        let body: { updateId?: unknown; metrics?: Record<string, unknown> } | null;
        try {
          body = JSON.parse(res.body) as typeof body;
        } catch {
          body = null;
        }
        if (!body || typeof body !== 'object' || !Number.isSafeInteger(body.updateId)) return { ok: false, reason: 'rejected', status: res.status, detail: 'trainer answered without an updateId', attempts, ms: Date.now() - started };
        return { ok: true, updateId: body.updateId as number, metrics: body.metrics && typeof body.metrics === 'object' ? body.metrics : {}, attempts, ms: Date.now() - started };
      }
      last = `HTTP ${res.status}: ${errorMessage(res.body)}`;
      if (res.status !== 429 && res.status < 500) return { ok: false, reason: 'rejected', status: res.status, detail: last, attempts, ms: Date.now() - started };
      busy = res.status === 429;
      const ra = Number(res.headers['retry-after']);
      if (Number.isFinite(ra) && ra > 0) retryAfterMs = ra * 1000;
    } catch (e) {
      last = (e as Error).message;
    }
    if (!busy) failures++;
    if (failures >= (opts.maxFailures ?? Infinity)) return { ok: false, reason: 'unreachable', status: lastStatus, detail: `gave up after ${failures} failed attempt(s) (${last})`, attempts, ms: Date.now() - started };
    const wait = Math.min(retryAfterMs ?? delay, Math.max(0, opts.deadline.getTime() - Date.now()));
    await sleep(wait, opts.signal);
    delay = Math.min(delay * 2, opts.maxBackoffMs ?? 8000);
  }
}

/** Broker mode: the event is accepted for delivery; the trainer's update shows up in the store. */
async function awaitStoredUpdate(opts: InvokeOptions, attempts: number, started: number): Promise<InvokeOutcome> {
  while (Date.now() < opts.deadline.getTime()) {
    if (opts.signal?.aborted) return { ok: false, reason: 'stopped', detail: 'run stopped', attempts, ms: Date.now() - started };
    const found = await opts.findUpdate?.().catch(() => undefined);
    if (found) return { ok: true, updateId: found.updateId, metrics: found.metrics, attempts, ms: Date.now() - started };
    await sleep(1000, opts.signal);
  }
  return { ok: false, reason: 'deadline', detail: 'no update arrived through the broker before the deadline', attempts, ms: Date.now() - started };
}

function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } | string };
    return typeof parsed.error === 'string' ? parsed.error : parsed.error?.message ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** node:http rather than fetch: training can outlast fetch's fixed five-minute header timeout. */
function postOnce(url: string, headers: Record<string, string>, body: string, timeoutMs: number, signal?: AbortSignal): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request(u, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) }, signal, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 1024 * 1024) req.destroy(new Error('trainer response too large'));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(Math.max(1, timeoutMs), () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs)} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Waits `ms`, or less once `signal` aborts; never throws (the caller checks the signal). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return timeout(ms, undefined, { signal }).catch(() => undefined);
}

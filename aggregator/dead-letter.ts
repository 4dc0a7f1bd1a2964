/**
 * Dead-letter sink for the eventing transport. A `round.train` event that Knative Eventing could
 * not deliver to its trainer (after the Trigger's own retries) lands here instead of vanishing:
 * it is counted (edgefl_event_dead_letters_total), logged with Knative's error attributes, and
 * republished to the Broker while its round is still open, a bounded number of times. Without
 * this a lost delivery costs that node the whole round with nothing to show why.
 *
 * Only events the aggregator itself signed are republished: the event carries the node-bound
 * invocation token (AUTH_EXTENSION), so a caller inside the cluster cannot use this route to
 * make the aggregator publish arbitrary training requests.
 */
import express, { type RequestHandler } from 'express';
import client from 'prom-client';
import { CloudEvent, HTTP } from 'cloudevents';
import { verifyInvokeToken } from '../services/shared/auth.js';
import { AUTH_EXTENSION, EVENT_TYPES, NODE_EXTENSION, encodeEvent, makeEvent, readEvent } from '../services/http/cloudevents.js';
import { HttpError } from '../services/http/errors.js';
import type { Logger } from '../services/shared/log.js';
import type { Metrics } from '../services/shared/metrics.js';

/** Extension counting how often the aggregator already republished this event. */
export const REDELIVERY_EXTENSION = 'edgeflredelivery';
/** What Knative adds to a dead-lettered event (Eventing data-plane spec). */
const KNATIVE_ERROR_ATTRS = ['knativeerrorcode', 'knativeerrordest', 'knativeerrordata'] as const;

export type DeadLetterOutcome = 'redelivered' | 'gave_up' | 'expired' | 'no_broker' | 'publish_failed';

export interface DeadLetterOptions {
  /** Broker URL (K_SINK); without it dead letters are only recorded. */
  brokerUrl?: string;
  /** The invoke secret the round events were signed with; when set, unsigned dead letters are refused. */
  invokeSecret?: string;
  /** Republishes per (run, round, node) before giving up. */
  maxRedeliveries?: number;
  metrics: Metrics;
  log: Logger;
  /** Test hook: how an event reaches the broker. */
  publish?: (url: string, headers: Record<string, string>, body: string) => Promise<number>;
  now?: () => number;
}

const DEFAULT_MAX_REDELIVERIES = 2;
const MAX_TRACKED = 1000;

function deadLetterCounter(metrics: Metrics): client.Counter<'type' | 'node' | 'outcome'> {
  const name = 'edgefl_event_dead_letters_total';
  const existing = metrics.registry.getSingleMetric(name);
  if (existing) return existing as client.Counter<'type' | 'node' | 'outcome'>;
  return new client.Counter({
    name,
    help: 'Events Knative Eventing dead-lettered to the aggregator, by what the aggregator did with them',
    labelNames: ['type', 'node', 'outcome'],
    registers: [metrics.registry],
  });
}

async function postToBroker(url: string, headers: Record<string, string>, body: string): Promise<number> {
  const res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}

/** The raw attributes of the event, Knative's error extensions included (readEvent keeps only data). */
function attributesOf(headers: Record<string, unknown>, body: string): Record<string, unknown> {
  const event = HTTP.toEvent({ headers: headers as Record<string, string>, body }) as CloudEvent<unknown>;
  return event as unknown as Record<string, unknown>;
}

export function deadLetterHandlers(opts: DeadLetterOptions): RequestHandler[] {
  const counter = deadLetterCounter(opts.metrics);
  const publish = opts.publish ?? postToBroker;
  const now = opts.now ?? Date.now;
  const maxRedeliveries = opts.maxRedeliveries ?? DEFAULT_MAX_REDELIVERIES;
  // Republish count per round and node, also kept here so a stripped extension cannot reset it.
  const republished = new Map<string, number>();

  const handler: RequestHandler = async (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : undefined;
    const event = readEvent(req.headers, body, EVENT_TYPES.roundTrain);
    const attrs = attributesOf(req.headers, body!.toString('utf8'));
    const data = (event.data ?? {}) as { runId?: unknown; round?: unknown; deadline?: unknown };
    const nodeAttr: unknown = attrs[NODE_EXTENSION];
    // The Triggers filter on a bare node number; anything else was never routed to a trainer
    // (and would otherwise become an unbounded metric label).
    if (typeof nodeAttr !== 'string' || !/^\d{1,6}$/.test(nodeAttr)) throw new HttpError(400, 'invalid_node', `${NODE_EXTENSION} must be a node number`);
    const nodeNumber: string = nodeAttr;
    const nodeId = `node-${nodeNumber}`;
    // An expired token (it lives until shortly after the round's deadline) means the round is
    // over: record it, never republish it. Any other failure: not an event the aggregator sent.
    let tokenExpired = false;
    if (opts.invokeSecret) {
      const check = verifyInvokeToken(opts.invokeSecret, event.auth, nodeId, now());
      if (!check.ok && check.reason !== 'expired') throw new HttpError(401, 'unauthorized', `dead letter is not signed for ${nodeId} (${check.reason})`);
      tokenExpired = !check.ok;
    }
    const key = `${String(data.runId)}/${String(data.round)}/${nodeId}`;
    const deadline = typeof data.deadline === 'string' ? Date.parse(data.deadline) : NaN;
    const fromEvent = Number(attrs[REDELIVERY_EXTENSION] ?? 0);
    const done = Math.max(Number.isSafeInteger(fromEvent) ? fromEvent : 0, republished.get(key) ?? 0);

    let outcome: DeadLetterOutcome;
    if (tokenExpired || !(deadline > now())) outcome = 'expired';
    else if (!opts.brokerUrl) outcome = 'no_broker';
    else if (done >= maxRedeliveries) outcome = 'gave_up';
    else outcome = await republish(done + 1);

    counter.inc({ type: EVENT_TYPES.roundTrain, node: nodeId, outcome });
    const knative = Object.fromEntries(KNATIVE_ERROR_ATTRS.map((a) => [a, attrs[a]]));
    req.log.warn('round event dead-lettered', { outcome, node: nodeId, run_id: data.runId, round: data.round, event_id: event.id, redeliveries: done, ...knative });
    // 200 with no body: a 2xx ends the delivery, and a body would be taken as a reply event.
    res.status(outcome === 'publish_failed' ? 502 : 200).end();

    async function republish(attempt: number): Promise<DeadLetterOutcome> {
      const extensions: Record<string, string> = { [NODE_EXTENSION]: nodeNumber, [REDELIVERY_EXTENSION]: String(attempt) };
      if (event.auth) extensions[AUTH_EXTENSION] = event.auth;
      const fresh = makeEvent(EVENT_TYPES.roundTrain, event.source ?? '/edgefl/aggregator', data as Record<string, unknown>, extensions);
      const msg = encodeEvent(fresh, 'binary');
      try {
        const status = await publish(opts.brokerUrl!, { ...msg.headers, 'content-type': 'application/json' }, msg.body);
        if (status < 200 || status >= 300) throw new Error(`broker answered HTTP ${status}`);
      } catch (err) {
        opts.log.error('could not republish a dead-lettered round event', { node: nodeId, err: (err as Error).message });
        return 'publish_failed';
      }
      if (republished.size >= MAX_TRACKED) republished.delete(republished.keys().next().value!);
      republished.set(key, attempt);
      return 'redelivered';
    }
  };
  return [express.raw({ type: () => true, limit: '64kb' }), handler];
}

/**
 * The aggregator's dead-letter sink: what Knative Eventing could not deliver is counted, logged
 * and republished to the broker while the round is open, a bounded number of times, and only
 * for events the aggregator signed. The broker here is a real local HTTP server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { deadLetterHandlers, REDELIVERY_EXTENSION } from '../aggregator/dead-letter.js';
import { applyCommonMiddleware, applyErrorHandlers } from '../services/http/common.js';
import { AUTH_EXTENSION, EVENT_TYPES, NODE_EXTENSION, encodeEvent, makeEvent } from '../services/http/cloudevents.js';
import { invokeClaims, signInvokeToken } from '../services/shared/auth.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics } from '../services/shared/metrics.js';
import { parsePrometheus } from './helpers/prometheus.js';

const SECRET = 'dead-letter-test-secret';
const log = createLogger({ service: 'test' }, 'error');
const received: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
let brokerStatus = 202;
const servers: http.Server[] = [];

function listen(handler: http.RequestListener | express.Express): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

async function sinkApp(brokerUrl: string | undefined) {
  const metrics = createMetrics('aggregator');
  const app = express();
  applyCommonMiddleware(app, log, metrics);
  app.post('/events/dead-letter', ...deadLetterHandlers({ brokerUrl, invokeSecret: SECRET, metrics, log }));
  applyErrorHandlers(app, log);
  return { url: await listen(app), metrics };
}

let brokerUrl: string;
let sink: { url: string; metrics: ReturnType<typeof createMetrics> };

beforeAll(async () => {
  brokerUrl = await listen((req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(brokerStatus).end();
    });
  });
});
beforeEach(async () => {
  received.length = 0;
  brokerStatus = 202;
  sink = await sinkApp(brokerUrl);
});
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

let round = 0;
/** A round.train event as the aggregator publishes it, after Knative added its error attributes. */
function deadLetter(opts: { node?: string; signedFor?: string; tokenTtlMs?: number; deadlineMs?: number; redelivery?: number; round?: number; type?: string } = {}) {
  const node = opts.node ?? '1';
  const data = { runId: 'run-dl', round: opts.round ?? ++round, modelVersion: 1, deadline: new Date(Date.now() + (opts.deadlineMs ?? 60_000)).toISOString() };
  const ext: Record<string, string> = {
    [NODE_EXTENSION]: node,
    [AUTH_EXTENSION]: signInvokeToken(SECRET, invokeClaims(opts.signedFor ?? `node-${node}`, data), opts.tokenTtlMs ?? 120_000),
    knativeerrorcode: '503',
    knativeerrordest: `http://edgefl-trainer-${node}.edgefl.svc.cluster.local`,
  };
  if (opts.redelivery !== undefined) ext[REDELIVERY_EXTENSION] = String(opts.redelivery);
  const msg = encodeEvent(makeEvent(opts.type ?? EVENT_TYPES.roundTrain, '/edgefl/aggregator', data, ext), 'binary');
  const headers: Record<string, string> = { ...msg.headers, 'content-type': 'application/json' };
  return { headers, body: msg.body, data };
}

const post = (e: { headers: Record<string, string>; body: string }) => fetch(`${sink.url}/events/dead-letter`, { method: 'POST', headers: e.headers, body: e.body });

async function outcomes(): Promise<Record<string, number>> {
  const text = await sink.metrics.registry.metrics();
  const out: Record<string, number> = {};
  for (const s of parsePrometheus(text)) if (s.name === 'edgefl_event_dead_letters_total') out[s.labels.outcome!] = (out[s.labels.outcome!] ?? 0) + s.value;
  return out;
}

describe('dead-letter sink', () => {
  it('republishes an open round’s event to the broker with the same data, node and token', async () => {
    const e = deadLetter();
    const res = await post(e);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(''); // no reply event
    expect(received).toHaveLength(1);
    const h = received[0]!.headers;
    expect(h['ce-type']).toBe(EVENT_TYPES.roundTrain);
    expect(h[`ce-${NODE_EXTENSION}`]).toBe('1');
    expect(h[`ce-${AUTH_EXTENSION}`]).toBe(e.headers[`ce-${AUTH_EXTENSION}`]);
    expect(h[`ce-${REDELIVERY_EXTENSION}`]).toBe('1');
    expect(h['ce-knativeerrorcode']).toBeUndefined();
    expect(JSON.parse(received[0]!.body)).toEqual(e.data);
    expect(await outcomes()).toEqual({ redelivered: 1 });
  });

  it('gives up after the redelivery budget, even if the count attribute is stripped', async () => {
    const r = ++round;
    for (let i = 0; i < 3; i++) expect((await post(deadLetter({ round: r }))).status).toBe(200);
    expect(received.map((x) => x.headers[`ce-${REDELIVERY_EXTENSION}`])).toEqual(['1', '2']);
    expect((await post(deadLetter({ redelivery: 2 }))).status).toBe(200);
    expect(received).toHaveLength(2);
    expect(await outcomes()).toEqual({ redelivered: 2, gave_up: 2 });
  });

  it('records but does not republish once the round deadline passed', async () => {
    expect((await post(deadLetter({ deadlineMs: -1000 }))).status).toBe(200);
    expect(received).toHaveLength(0);
    expect(await outcomes()).toEqual({ expired: 1 });
  });

  it('an old token cannot be replayed with a forged future deadline', async () => {
    const e = deadLetter({ tokenTtlMs: -1000 });
    expect((await post(e)).status).toBe(200);
    expect(received).toHaveLength(0);
    expect(await outcomes()).toEqual({ expired: 1 });
  });

  it('refuses events the aggregator did not sign for that node', async () => {
    const res = await post(deadLetter({ node: '2', signedFor: 'node-1' }));
    expect(res.status).toBe(401);
    expect((await res.json()).error.code).toBe('unauthorized');
    const unsigned = deadLetter();
    delete unsigned.headers[`ce-${AUTH_EXTENSION}`];
    expect((await post(unsigned)).status).toBe(401);
    expect(received).toHaveLength(0);
  });

  it('rejects other event types, non-events and events routed to no node with 4xx', async () => {
    expect((await post(deadLetter({ type: EVENT_TYPES.updateReady }))).status).toBe(400);
    const noNode = await post(deadLetter({ node: 'x'.repeat(40) }));
    expect(noNode.status).toBe(400);
    expect((await noNode.json()).error.code).toBe('invalid_node');
    const res = await fetch(`${sink.url}/events/dead-letter`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    expect(res.status).toBe(415);
  });

  it('a broker that refuses the republish is a visible 502, and without a broker it only records', async () => {
    brokerStatus = 500;
    expect((await post(deadLetter())).status).toBe(502);
    expect(await outcomes()).toEqual({ publish_failed: 1 });
    sink = await sinkApp(undefined);
    expect((await post(deadLetter())).status).toBe(200);
    expect(await outcomes()).toEqual({ no_broker: 1 });
  });
});

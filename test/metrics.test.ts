import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PNG } from 'pngjs';
import { createAggregatorApp } from '../aggregator/app.js';
import { Federation } from '../aggregator/federation.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset } from '../datasets/types.js';
import { initBackend } from '../services/core/backend.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics, routePattern } from '../services/shared/metrics.js';
import { buildModel } from '../services/core/model.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

// ---- a small parser for the Prometheus text exposition format (0.0.4) ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;
    let lm: RegExpExecArray | null;
    let consumed = 0;
    while ((lm = re.exec(body))) {
      labels[lm[1]!] = lm[2]!.replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
      consumed = re.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`malformed labels in: ${line}`);
    const v = m[4]!;
    out.push({ name: m[1]!, labels, value: v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v) });
  }
  return out;
}

/** Sum of every sample of `name` whose labels include `match`. */
function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

async function scrape(base: string): Promise<Sample[]> {
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parsePrometheus(await res.text());
}

function listen(app: import('express').Express): Promise<{ server: Server; url: string }> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
  });
}

function digitPng(): Buffer {
  // a white "1" on black, 28x28
  const png = new PNG({ width: 28, height: 28 });
  png.data.fill(0);
  for (let y = 5; y < 23; y++)
    for (let x = 13; x < 16; x++) {
      const i = (y * 28 + x) * 4;
      png.data[i] = png.data[i + 1] = png.data[i + 2] = 255;
    }
  for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255;
  return PNG.sync.write(png);
}

const log = createLogger({ service: 'test' }, 'error');
let db: TestDatabase;
const servers: Server[] = [];
let aggUrl: string;
let trainerUrl: string;
let servingUrl: string;
let federation: Federation;
let holder: ModelHolder;

beforeAll(async () => {
  await initBackend(undefined);
  db = await createTestDatabase();
  const split = builtinMnistSplit({ testSize: 200, seed: 7 });
  const shard = subset(split.train, Array.from({ length: 96 }, (_, i) => i));

  const trainerModel = buildModel(1);
  const trainer = await listen(createTrainerApp({ pool: db.pool, nodeId: 'node-0', shard, model: trainerModel, log }));
  servers.push(trainer.server);
  trainerUrl = trainer.url;

  const servingMetrics = createMetrics('serving');
  holder = new ModelHolder(db.pool, log, servingMetrics);
  const serving = await listen(createServingApp({ holder, log, nodeId: 'node-0', maxBatch: 64, maxBodyBytes: 1 << 20, metrics: servingMetrics }));
  servers.push(serving.server);
  servingUrl = serving.url;

  // node-1 points at the serving function, which answers the trainer's POST / with 404: a final refusal.
  const trainers = async () => [
    { nodeId: 'node-0', url: trainerUrl },
    { nodeId: 'node-1', url: servingUrl },
  ];
  const aggMetrics = createMetrics('aggregator');
  federation = new Federation({ pool: db.pool, log, heldOut: split.test, trainers, metrics: aggMetrics, retryBackoffMs: 50 });
  const agg = await listen(createAggregatorApp({ pool: db.pool, federation, log, trainers, servingUrls: () => [servingUrl], metrics: aggMetrics }));
  servers.push(agg.server);
  aggUrl = agg.url;
});

afterAll(async () => {
  await federation?.shutdown();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  await db?.close();
});

describe('Prometheus text parser', () => {
  it('reads names, escaped labels and special values', () => {
    const s = parsePrometheus('# HELP x y\n# TYPE x counter\nx{a="1",b="q\\"uote\\\\"} 3\ny 4.5e-3\nz_bucket{le="+Inf"} +Inf 1700000000\n');
    expect(s).toEqual([
      { name: 'x', labels: { a: '1', b: 'q"uote\\' }, value: 3 },
      { name: 'y', labels: {}, value: 0.0045 },
      { name: 'z_bucket', labels: { le: '+Inf' }, value: Infinity },
    ]);
  });

  it('labels RegExp routes readably', () => {
    expect(routePattern(/^\/v1\/models\/([^/:]+):predict$/)).toBe('/v1/models/:name:predict');
    expect(routePattern('/runs/:id')).toBe('/runs/:id');
  });
});

describe('/metrics', () => {
  it('counts a federated round on the aggregator and the trainer', async () => {
    const before = await scrape(aggUrl);
    expect(total(before, 'edgefl_rounds_total')).toBe(0);
    const res = await fetch(`${aggUrl}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rounds: 1, epochs: 1, batchSize: 32, minQuorum: 1, roundTimeoutS: 60, targetAccuracy: 1 }),
    });
    expect(res.status).toBe(201);
    await federation.idle();
    const run = (await (await fetch(`${aggUrl}/runs`)).json()).runs[0];
    expect(run.status).toBe('completed');

    const agg = await scrape(aggUrl);
    expect(total(agg, 'edgefl_rounds_total', { status: 'completed' })).toBe(1);
    expect(total(agg, 'edgefl_round_duration_seconds_count')).toBe(1);
    expect(total(agg, 'edgefl_round_duration_seconds_sum')).toBeGreaterThan(0);
    expect(total(agg, 'edgefl_aggregation_duration_seconds_count')).toBe(1);
    expect(total(agg, 'edgefl_round_participants')).toBe(1);
    expect(total(agg, 'edgefl_round_failed_nodes')).toBe(1);
    expect(total(agg, 'edgefl_round_node_failures_total', { node: 'node-1', reason: 'rejected' })).toBe(1);
    expect(total(agg, 'edgefl_model_version')).toBe(run.latestVersion);
    expect(total(agg, 'edgefl_global_accuracy')).toBeGreaterThan(0);
    expect(total(agg, 'edgefl_http_requests_total', { method: 'POST', route: '/runs', status: '201' })).toBe(1);
    expect(total(agg, 'edgefl_http_request_duration_seconds_count', { method: 'POST', route: '/runs', status: '201' })).toBe(1);
    // every sample carries the service label
    expect(agg.every((s) => s.labels.service === 'aggregator')).toBe(true);

    const trainer = await scrape(trainerUrl);
    expect(total(trainer, 'edgefl_training_duration_seconds_count')).toBe(1);
    expect(total(trainer, 'edgefl_training_samples_per_second')).toBeGreaterThan(0);
    // The aggregator sends a CloudEvent: the reply event comes with 200 (Eventing data-plane contract).
    expect(total(trainer, 'edgefl_http_requests_total', { method: 'POST', route: '/', status: '200' })).toBe(1);
  });

  it('counts predictions, images, routes and the loaded model on the serving function', async () => {
    const loaded = await holder.refresh();
    expect(loaded?.version).toBeGreaterThan(0);
    const before = await scrape(servingUrl);
    expect(total(before, 'edgefl_model_version')).toBe(loaded!.version);
    for (const phase of ['fetch', 'decode', 'install']) expect(total(before, 'edgefl_model_load_seconds', { phase })).toBeGreaterThan(0);
    const predictRoute = { method: 'POST', route: '/v1/models/:name:predict', status: '200' };
    const p0 = total(before, 'edgefl_predictions_total');
    const i0 = total(before, 'edgefl_images_served_total');

    const batch = 5;
    for (let k = 0; k < 3; k++) {
      const res = await fetch(`${servingUrl}/v1/models/mnist:predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instances: Array.from({ length: batch }, () => new Array(784).fill(0)) }),
      });
      expect(res.status).toBe(200);
    }
    const img = await fetch(`${servingUrl}/v1/models/mnist:classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: digitPng() });
    expect(img.status).toBe(200);
    expect((await img.json()).model_version).toBe(String(loaded!.version));
    const bad = await fetch(`${servingUrl}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(bad.status).toBe(400);
    await fetch(`${servingUrl}/no/such/route`);

    const after = await scrape(servingUrl);
    expect(total(after, 'edgefl_predictions_total') - p0).toBe(4);
    expect(total(after, 'edgefl_images_served_total') - i0).toBe(3 * batch + 1);
    expect(total(after, 'edgefl_http_requests_total', predictRoute) - total(before, 'edgefl_http_requests_total', predictRoute)).toBe(3);
    expect(total(after, 'edgefl_http_request_duration_seconds_count', predictRoute)).toBe(3);
    expect(total(after, 'edgefl_http_request_duration_seconds_bucket', { ...predictRoute, le: '+Inf' })).toBe(3);
    expect(total(after, 'edgefl_http_requests_total', { method: 'POST', route: '/v1/models/:name:predict', status: '400' })).toBe(1);
    expect(total(after, 'edgefl_http_requests_total', { method: 'POST', route: '/v1/models/:name:classify', status: '200' })).toBe(1);
    const unmatched = { route: 'unmatched', status: '404' };
    expect(total(after, 'edgefl_http_requests_total', unmatched) - total(before, 'edgefl_http_requests_total', unmatched)).toBe(1);
    // the metrics scrape itself is counted under its own route
    expect(total(after, 'edgefl_http_requests_total', { method: 'GET', route: '/metrics' })).toBeGreaterThanOrEqual(1);
    expect(after.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
  });
});

/**
 * components/observability: the PodMonitors select the pods they mean, the dashboard is
 * well-formed importable JSON, and, the drift guard, every metric name and label its queries
 * use is exposed on /metrics by the running services (or added by the PodMonitors' relabelings).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as yaml from 'js-yaml';
import { createAggregatorApp } from '../aggregator/app.js';
import { Federation } from '../aggregator/federation.js';
import { EVENT_TYPES, NODE_EXTENSION, encodeEvent, makeEvent } from '../services/http/cloudevents.js';
import { DEFAULT_MANIFEST_OPTIONS, LABELS, renderManifests } from '../services/kube/manifests.js';
import { DASHBOARD_FILE, KNATIVE_PORTS, dashboardJson, podLabelMeta } from '../services/kube/observability.js';
import { createMetrics } from '../services/shared/metrics.js';
import { createServingApp } from '../services/serving/app.js';
import { ModelHolder } from '../services/serving/model-holder.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { quietLog, serve, shards, startTrainer, statusTrainer, testData, type Running } from './helpers/federation.js';
import type { Obj } from './helpers/manifest-checks.js';
import { parsePrometheus, type PromSample } from './helpers/prometheus.js';
import { legendLabels, promqlRefs } from './helpers/promql.js';

const knativeDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'knative');
const objects = renderManifests({ ...DEFAULT_MANIFEST_OPTIONS, eventing: false, observability: true }) as Obj[];
const monitors = objects.filter((o) => o.kind === 'PodMonitor');
const dashboard = JSON.parse(dashboardJson()) as Obj;
const targets = (dashboard.panels as Obj[]).flatMap((p) => (p.targets ?? []) as Obj[]);

/** Labels Prometheus Operator puts on every PodMonitor target, plus those our relabelings add. */
const TARGET_LABELS = new Set([
  'namespace', 'pod', 'container', 'endpoint', 'job', 'instance',
  ...monitors.flatMap((m) => (m.spec.podMetricsEndpoints as Obj[]).flatMap((e) => (e.relabelings as Obj[]).map((r) => r.targetLabel as string))),
]);

let prometheusBin: string | undefined;
try {
  await promisify(execFile)('prometheus', ['--version']);
  prometheusBin = 'prometheus';
} catch {
  prometheusBin = undefined; // Debian package `prometheus`; the live-query test is skipped without it
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function selects(selector: Obj, labels: Record<string, string>): boolean {
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return byLabel && ((selector.matchExpressions ?? []) as Obj[]).every((e) => e.operator === 'In' && e.values.includes(labels[e.key]));
}

describe('PodMonitors', () => {
  const workloads = objects.filter((o) => o.spec?.template?.spec?.containers);
  const podLabels = (w: Obj): Record<string, string> => ({
    ...w.spec.template.metadata.labels,
    // Knative adds these to every revision pod.
    ...(w.apiVersion === 'serving.knative.dev/v1' ? { [LABELS.knativeService]: w.metadata.name, 'serving.knative.dev/revision': `${w.metadata.name}-00001` } : {}),
  });
  const roleOf = (w: Obj) => w.metadata.labels[LABELS.role];

  it('the aggregator monitor scrapes exactly the aggregator, on a port its container declares', () => {
    const m = monitors.find((o) => o.metadata.name === 'edgefl-aggregator')!;
    const hit = workloads.filter((w) => selects(m.spec.selector, podLabels(w)));
    expect(hit.map(roleOf)).toEqual(['aggregator']);
    const ports = (hit[0]!.spec.template.spec.containers[0].ports as Obj[]).map((p) => p.name);
    expect(ports).toContain(m.spec.podMetricsEndpoints[0].port);
  });

  it('the function and queue-proxy monitors scrape every trainer and serving pod and nothing else', () => {
    for (const [name, port] of [['edgefl-functions', KNATIVE_PORTS.user], ['edgefl-queue-proxy', KNATIVE_PORTS.queueProxyMetrics]] as const) {
      const m = monitors.find((o) => o.metadata.name === name)!;
      expect(m.spec.podMetricsEndpoints[0].port).toBe(port);
      const hit = workloads.filter((w) => selects(m.spec.selector, podLabels(w)));
      expect(hit.map((w) => w.metadata.name).sort()).toEqual(workloads.filter((w) => ['trainer', 'serving'].includes(roleOf(w))).map((w) => w.metadata.name).sort());
    }
  });

  it('relabelings read pod labels the edge pods really carry', () => {
    const trainer = objects.find((o) => o.metadata.name === 'edgefl-trainer-0')!;
    const metaLabels = new Set(Object.keys(podLabels(trainer)).map(podLabelMeta));
    for (const m of monitors) for (const r of m.spec.podMetricsEndpoints[0].relabelings as Obj[]) expect(metaLabels, r.sourceLabels[0]).toContain(r.sourceLabels[0]);
  });
});

describe('Grafana dashboard', () => {
  it('is importable JSON: unique ids and refIds, a datasource variable, panels inside the grid without overlap', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect((dashboard.templating.list as Obj[]).map((v) => v.name)).toContain('datasource');
    const panels = dashboard.panels as Obj[];
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
        expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
        cells.add(`${x},${y}`);
      }
      if (p.type === 'row') continue;
      expect(p.datasource.uid).toBe('${datasource}');
      expect(new Set((p.targets as Obj[]).map((t) => t.refId)).size).toBe(p.targets.length);
    }
  });

  it('covers what operators asked for', () => {
    const titles = (dashboard.panels as Obj[]).map((p) => p.title).join('\n');
    for (const t of ['Global accuracy', 'Rounds by outcome', 'Local training time', 'Training throughput', 'Cold starts', 'Request rate', 'Latency percentiles', 'Errors', 'Served model version', 'RSS vs limit: serving']) {
      expect(titles).toContain(t);
    }
  });

  it('the checked-in JSON and the sidecar ConfigMap hold the same dashboard', async () => {
    const file = await fs.readFile(path.join(knativeDir, 'components/observability', DASHBOARD_FILE), 'utf8');
    expect(file).toBe(dashboardJson());
    const [cm] = yaml.loadAll(await fs.readFile(path.join(knativeDir, 'components/observability/grafana-dashboard-configmap.yaml'), 'utf8')) as Obj[];
    expect(cm!.metadata.labels.grafana_dashboard).toBe('1');
    expect(JSON.parse(cm!.data[DASHBOARD_FILE])).toEqual(dashboard);
  });
});

describe('dashboard queries against live /metrics', () => {
  let db: TestDatabase;
  const running: Running[] = [];
  let federation: Federation;
  const samples: PromSample[] = [];
  const byRole: Record<string, string> = {};
  let prometheus: ChildProcess | undefined;
  let promDir: string | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    const split = await testData(200);
    const trainer = await startTrainer(db.pool, 'node-0', shards(split.train, 1, 96)[0]!);
    const refusing = await statusTrainer(400); // node-1 refuses: node failures get their labels
    running.push(trainer, refusing);
    const trainers = async () => [{ nodeId: 'node-0', url: trainer.url }, { nodeId: 'node-1', url: refusing.url }];
    const aggMetrics = createMetrics('aggregator');
    federation = new Federation({ pool: db.pool, log: quietLog, heldOut: split.test, trainers, metrics: aggMetrics, retryBackoffMs: 20 });
    const agg = await serve(createAggregatorApp({ pool: db.pool, federation, log: quietLog, trainers, servingUrls: () => [], metrics: aggMetrics }));
    running.push(agg);

    const run = await fetch(`${agg.url}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rounds: 1, epochs: 1, batchSize: 32, minQuorum: 1, roundTimeoutS: 60, targetAccuracy: 1 }),
    });
    expect(run.status).toBe(201);
    await federation.idle();
    // A dead letter through the real route (no broker configured here: recorded only).
    const msg = encodeEvent(makeEvent(EVENT_TYPES.roundTrain, '/edgefl/aggregator', { runId: 'r', round: 1, deadline: new Date(Date.now() + 60_000).toISOString() }, { [NODE_EXTENSION]: '1' }), 'binary');
    expect((await fetch(`${agg.url}/events/dead-letter`, { method: 'POST', headers: { ...msg.headers, 'content-type': 'application/json' }, body: msg.body })).status).toBe(200);

    const servingMetrics = createMetrics('serving');
    const holder = new ModelHolder(db.pool, quietLog, servingMetrics);
    await holder.refresh();
    const serving = await serve(createServingApp({ holder, log: quietLog, nodeId: 'node-0', maxBatch: 16, maxBodyBytes: 1 << 20, metrics: servingMetrics }));
    running.push(serving);
    const zeros = new Array(784).fill(0);
    const post = (p: string, body: unknown) => fetch(`${serving.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/v1/models/mnist:predict', { instances: [zeros] })).status).toBe(200);
    expect((await post('/v2/models/mnist/infer', { inputs: [{ name: 'images', datatype: 'FP32', shape: [1, 784], data: zeros }] })).status).toBe(200);
    expect((await post('/v1/models/mnist:predict', {})).status).toBe(400);

    for (const r of [agg, trainer, serving]) samples.push(...parsePrometheus(await (await fetch(`${r.url}/metrics`)).text()));
    Object.assign(byRole, { aggregator: agg.url, trainer: trainer.url, serving: serving.url });
  });

  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    if (promDir) await fs.rm(promDir, { recursive: true, force: true });
    await federation?.shutdown();
    for (const r of running) await r.close();
    await db?.close();
  });

  it('every metric, selector label and value, grouping and legend label exists', () => {
    const byName = new Map<string, PromSample[]>();
    for (const s of samples) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
    const problems: string[] = [];
    for (const t of targets) {
      const refs = promqlRefs(t.expr);
      const exposed = new Set<string>(TARGET_LABELS);
      for (const [name, matchers] of refs.selectors) {
        const series = byName.get(name);
        if (!series) {
          problems.push(`${name} is not exposed by any service (in: ${t.expr})`);
          continue;
        }
        for (const s of series) for (const l of Object.keys(s.labels)) exposed.add(l);
        for (const m of matchers) {
          if (TARGET_LABELS.has(m.label)) continue;
          const values = series.map((s) => s.labels[m.label]).filter((v): v is string => v !== undefined);
          if (!values.length) problems.push(`${name} has no label ${m.label}`);
          else if (m.op === '=' && !values.includes(m.value)) problems.push(`${name}{${m.label}="${m.value}"} matches no series`);
          else if (m.op === '=~' && !values.some((v) => new RegExp(`^(?:${m.value})$`).test(v))) problems.push(`${name}{${m.label}=~"${m.value}"} matches no series`);
        }
      }
      for (const l of [...refs.grouping, ...legendLabels(t.legendFormat)]) if (!exposed.has(l)) problems.push(`label ${l} is on none of the series in: ${t.expr}`);
    }
    expect(problems).toEqual([]);
    expect(targets.length).toBeGreaterThan(15);
  });

  it('the check itself catches a renamed metric or label', () => {
    const names = new Set(samples.map((s) => s.name));
    expect(names.has('edgefl_training_samples_per_second')).toBe(true);
    expect(names.has('edgefl_training_samples_per_sec')).toBe(false);
    expect(promqlRefs('sum by (le, edgefl_node) (rate(edgefl_x_bucket{service="trainer", status=~"5.."}[$__rate_interval])) / vector(2)')).toEqual({
      selectors: new Map([['edgefl_x_bucket', [{ label: 'service', op: '=', value: 'trainer' }, { label: 'status', op: '=~', value: '5..' }]]]),
      grouping: new Set(['le', 'edgefl_node']),
    });
  });

  it.skipIf(!prometheusBin)('a real Prometheus scraping the services answers every dashboard query with data', async () => {
    promDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgefl-prom-'));
    const port = await freePort();
    // Static targets carrying the labels the PodMonitors' relabelings would add in a cluster.
    const target = (role: string, labels: Record<string, string>) => ({ targets: [new URL(byRole[role]!).host], labels: { namespace: 'edgefl', edgefl_role: role, ...labels } });
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [
        {
          job_name: 'edgefl',
          static_configs: [
            target('aggregator', { pod: 'edgefl-aggregator-0' }),
            target('trainer', { pod: 'edgefl-trainer-0-00001-a', edgefl_node: '0', knative_service: 'edgefl-trainer-0' }),
            target('serving', { pod: 'edgefl-serving-0-00001-a', edgefl_node: '0', knative_service: 'edgefl-serving-0' }),
          ],
        },
      ],
    };
    await fs.writeFile(path.join(promDir, 'prometheus.yml'), yaml.dump(config));
    prometheus = spawn(prometheusBin!, [`--config.file=${path.join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
    const query = async (expr: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
      return body.data!.result;
    };
    // Grafana fills these in; a window that holds a few 1 s scrapes.
    const grafana = (expr: string) => expr.replaceAll('$__rate_interval', '30s').replaceAll('$__range', '5m');
    await vi.waitFor(async () => expect((await query('up == 1')).length).toBe(3), { timeout: 30_000, interval: 500 });
    for (const t of targets) {
      await vi.waitFor(async () => expect((await query(grafana(t.expr))).length, t.expr).toBeGreaterThan(0), { timeout: 20_000, interval: 500 });
    }
  }, 90_000);
});

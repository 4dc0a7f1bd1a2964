/**
 * The Grafana dashboard for an edgefl deployment, as importable JSON (Dashboards → Import, or
 * the Grafana sidecar via the ConfigMap in components/observability).
 *
 * Every query uses only metric names and labels the services expose on /metrics, plus the
 * labels the PodMonitors add (SCRAPE_LABELS) and those Prometheus Operator adds to every
 * target (pod, namespace, ...); test/observability.test.ts checks that against running
 * services so the dashboard cannot drift from the code. Memory limits come from RESOURCES.
 */
import { RESOURCES, SCRAPE_LABELS, type ManifestRole } from './constants.js';

interface Target {
  expr: string;
  legendFormat: string;
}

interface PanelSpec {
  title: string;
  description: string;
  unit: string;
  targets: Target[];
  /** Grid width (of 24); height is fixed per row. */
  width: number;
  type?: 'timeseries' | 'stat';
}

const N = SCRAPE_LABELS.node;
const FN = SCRAPE_LABELS.knativeService;
const RATE = '$__rate_interval';

const q = (expr: string, legendFormat: string): Target => ({ expr, legendFormat });
const quantiles = (metric: string, selector: string, by: string, legend: string): Target[] =>
  [0.5, 0.95, 0.99].map((p) =>
    q(`histogram_quantile(${p}, sum by (le, ${by}) (rate(${metric}_bucket{${selector}}[${RATE}])))`, `p${Math.round(p * 100)} ${legend}`),
  );

function memoryPanel(role: Exclude<ManifestRole, 'postgres'>, byLabel: string): PanelSpec {
  const limit = parseQuantity(RESOURCES[role].limits.memory);
  return {
    title: `RSS vs limit: ${role}`,
    description: `Resident memory of each ${role} process against its container limit (${RESOURCES[role].limits.memory}, from RESOURCES in services/kube/constants.ts).`,
    unit: 'bytes',
    width: 8,
    targets: [q(`max by (${byLabel}, pod) (process_resident_memory_bytes{service="${role}"})`, `{{${byLabel}}} {{pod}}`), q(`vector(${limit})`, 'limit')],
  };
}

const ROWS: Array<{ title: string; panels: PanelSpec[] }> = [
  {
    title: 'Federation (aggregator)',
    panels: [
      { title: 'Global accuracy', description: 'Held-out accuracy of the latest global model of the current run.', unit: 'percentunit', width: 6, type: 'stat', targets: [q('max(edgefl_global_accuracy{service="aggregator"})', 'accuracy')] },
      { title: 'Global model version', description: 'Latest global model version the aggregator produced.', unit: 'none', width: 6, type: 'stat', targets: [q('max(edgefl_model_version{service="aggregator"})', 'version')] },
      { title: 'Rounds by outcome', description: 'Finished federated rounds per interval, by outcome.', unit: 'none', width: 12, targets: [q(`sum by (status) (increase(edgefl_rounds_total{service="aggregator"}[${RATE}]))`, '{{status}}')] },
      { title: 'Accuracy over time', description: 'Global accuracy after each round.', unit: 'percentunit', width: 8, targets: [q('max(edgefl_global_accuracy{service="aggregator"})', 'accuracy')] },
      { title: 'Round duration', description: 'Wall time of a federated round (training, aggregation and evaluation).', unit: 's', width: 8, targets: quantiles('edgefl_round_duration_seconds', 'service="aggregator"', 'service', '') },
      {
        title: 'Participants and failed nodes',
        description: 'Nodes whose update counted in the last round, and selected nodes whose update did not.',
        unit: 'none',
        width: 8,
        targets: [q('max(edgefl_round_participants{service="aggregator"})', 'participants'), q('max(edgefl_round_failed_nodes{service="aggregator"})', 'failed')],
      },
      { title: 'Node failures', description: 'Trainer invocations that failed, were late or were rejected, by node and reason.', unit: 'none', width: 12, targets: [q(`sum by (node, reason) (increase(edgefl_round_node_failures_total{service="aggregator"}[${RATE}]))`, '{{node}} {{reason}}')] },
      {
        title: 'Dead-lettered round events',
        description: 'round.train events Knative Eventing could not deliver (eventing component), by node and what the aggregator did with them.',
        unit: 'none',
        width: 12,
        targets: [q(`sum by (node, outcome) (increase(edgefl_event_dead_letters_total{service="aggregator"}[${RATE}]))`, '{{node}} {{outcome}}')],
      },
    ],
  },
  {
    title: 'Training (per edge node)',
    panels: [
      { title: 'Local training time', description: 'Duration of one local training per node.', unit: 's', width: 12, targets: quantiles('edgefl_training_duration_seconds', 'service="trainer"', N, `{{${N}}}`) },
      { title: 'Training throughput', description: 'Samples per second of the last local training per node.', unit: 'none', width: 12, targets: [q(`max by (${N}) (edgefl_training_samples_per_second{service="trainer"})`, `node {{${N}}}`)] },
    ],
  },
  {
    title: 'Serving (per function and protocol)',
    panels: [
      {
        title: 'Request rate',
        description: 'Requests per second per serving function and route (/v1: TF Serving REST, /v2: Open Inference V2, :classify: image upload).',
        unit: 'reqps',
        width: 12,
        targets: [q(`sum by (${FN}, route) (rate(edgefl_http_requests_total{service="serving"}[${RATE}]))`, `{{${FN}}} {{route}}`)],
      },
      {
        title: 'Errors',
        description: 'Responses with a 4xx or 5xx status per function, route and status.',
        unit: 'reqps',
        width: 12,
        targets: [q(`sum by (${FN}, route, status) (rate(edgefl_http_requests_total{service="serving", status=~"[45].."}[${RATE}]))`, `{{${FN}}} {{route}} {{status}}`)],
      },
      { title: 'Latency percentiles', description: 'Request latency inside the serving process per route (queue-proxy adds its own hop).', unit: 's', width: 12, targets: quantiles('edgefl_http_request_duration_seconds', 'service="serving"', 'route', '{{route}}') },
      { title: 'Served model version', description: 'Model version each node currently serves.', unit: 'none', width: 12, targets: [q(`max by (${N}) (edgefl_model_version{service="serving"})`, `node {{${N}}}`)] },
      {
        title: 'Cold starts',
        description: 'Serving pods that ran during the range, per node: with scale to zero each one is a cold start.',
        unit: 'none',
        width: 12,
        targets: [q(`count by (${N}) (count_over_time(process_start_time_seconds{service="serving"}[$__range]))`, `node {{${N}}}`)],
      },
      { title: 'Cold-start cost', description: 'Seconds to fetch, decode and install the model in the last pod start, per node and phase.', unit: 's', width: 12, targets: [q(`max by (${N}, phase) (edgefl_model_load_seconds{service="serving"})`, `node {{${N}}} {{phase}}`)] },
    ],
  },
  {
    title: 'Resources',
    panels: [memoryPanel('trainer', N), memoryPanel('serving', N), memoryPanel('aggregator', SCRAPE_LABELS.role)],
  },
];

/** "512Mi" → 536870912 (binary suffixes only; RESOURCES uses nothing else). */
export function parseQuantity(quantity: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  if (!m) throw new Error(`unsupported memory quantity '${quantity}'`);
  const scale = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 }[m[2] as 'Ki' | 'Mi' | 'Gi'] ?? 1;
  return Number(m[1]) * scale;
}

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
const PANEL_HEIGHT = 8;

export const DASHBOARD_UID = 'edgefl-overview';

export function renderDashboard(): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of ROWS) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { x: 0, y, w: 24, h: 1 }, panels: [] });
    y += 1;
    let x = 0;
    for (const p of row.panels) {
      if (x + p.width > 24) {
        x = 0;
        y += PANEL_HEIGHT;
      }
      panels.push({
        id: id++,
        type: p.type ?? 'timeseries',
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { x, y, w: p.width, h: PANEL_HEIGHT },
        fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
        options: p.type === 'stat' ? { reduceOptions: { calcs: ['lastNotNull'] } } : { legend: { displayMode: 'list', placement: 'bottom' } },
        targets: p.targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DATASOURCE, expr: t.expr, legendFormat: t.legendFormat })),
      });
      x += p.width;
    }
    y += PANEL_HEIGHT;
  }
  return {
    uid: DASHBOARD_UID,
    title: 'edgefl: federated learning at the edge',
    tags: ['edgefl', 'knative'],
    timezone: 'browser',
    editable: true,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [{ name: 'datasource', label: 'Prometheus', type: 'datasource', query: 'prometheus', current: {}, hide: 0 }],
    },
    annotations: { list: [] },
    panels,
  };
}

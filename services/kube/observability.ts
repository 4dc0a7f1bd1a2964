/**
 * Prometheus Operator scrape objects and the Grafana dashboard ConfigMap (components/observability).
 *
 * PodMonitors, not ServiceMonitors: trainers and serving pods come and go with Knative's
 * autoscaler and have no Service of their own to select, and a ServiceMonitor would add a
 * `service` target label that clashes with the `service` label every edgefl metric carries.
 * Scraping the app port directly does not count as a request, so it never keeps a pod from
 * scaling to zero.
 */
import { ConfigMap } from 'kubernetes-models/v1';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { LABELS, NAMES, PART_OF, SCRAPE_LABELS } from './constants.js';
import { renderDashboard } from './dashboard.js';
import type { ResolvedOptions } from './options.js';

/** The label the Grafana sidecar (kube-prometheus-stack default) looks for on dashboard ConfigMaps. */
export const GRAFANA_SIDECAR_LABEL = 'grafana_dashboard';
export const DASHBOARD_FILE = 'edgefl-dashboard.json';

/** Knative names the user container's port `user-port` and queue-proxy's metrics port `http-usermetric` (9091). */
export const KNATIVE_PORTS = { user: 'user-port', queueProxyMetrics: 'http-usermetric' } as const;

/** `edgefl.dev/node-id` → `__meta_kubernetes_pod_label_edgefl_dev_node_id`, as Prometheus sanitises it. */
export const podLabelMeta = (label: string) => `__meta_kubernetes_pod_label_${label.replace(/[^a-zA-Z0-9_]/g, '_')}`;

/** Copies pod labels onto every series, under the names the dashboard queries. */
const relabelings = [
  { sourceLabels: [podLabelMeta(LABELS.nodeId)], targetLabel: SCRAPE_LABELS.node },
  { sourceLabels: [podLabelMeta(LABELS.role)], targetLabel: SCRAPE_LABELS.role },
  { sourceLabels: [podLabelMeta(LABELS.knativeService)], targetLabel: SCRAPE_LABELS.knativeService },
  { sourceLabels: [podLabelMeta('serving.knative.dev/revision')], targetLabel: SCRAPE_LABELS.knativeRevision },
];

const edgeFunctions = {
  matchLabels: { [LABELS.partOf]: PART_OF },
  matchExpressions: [{ key: LABELS.role, operator: 'In', values: ['trainer', 'serving'] }],
};

export function podMonitorObjects(opts: ResolvedOptions) {
  const meta = (name: string) => ({ name, namespace: opts.namespace, labels: { [LABELS.partOf]: PART_OF } });
  return [
    new PodMonitor({
      metadata: meta('edgefl-aggregator'),
      spec: {
        selector: { matchLabels: { [LABELS.partOf]: PART_OF, [LABELS.role]: 'aggregator' } },
        podMetricsEndpoints: [{ port: 'http', path: '/metrics', interval: '30s', relabelings }],
      },
    }),
    new PodMonitor({
      metadata: meta('edgefl-functions'),
      spec: {
        selector: edgeFunctions,
        podMetricsEndpoints: [{ port: KNATIVE_PORTS.user, path: '/metrics', interval: '30s', relabelings }],
      },
    }),
    // Knative's own per-revision request metrics (request counts/latencies seen by queue-proxy,
    // including time queued during a cold start). Not used by the dashboard: their names
    // depend on the Knative version, and no test here can check them against a live queue-proxy.
    new PodMonitor({
      metadata: meta('edgefl-queue-proxy'),
      spec: {
        selector: edgeFunctions,
        podMetricsEndpoints: [{ port: KNATIVE_PORTS.queueProxyMetrics, path: '/metrics', interval: '30s', relabelings }],
      },
    }),
  ];
}

export function dashboardJson(): string {
  return JSON.stringify(renderDashboard(), null, 2) + '\n';
}

export function dashboardConfigMapObjects(opts: ResolvedOptions) {
  return [
    new ConfigMap({
      metadata: {
        name: NAMES.dashboardConfigMap,
        namespace: opts.namespace,
        labels: { [LABELS.partOf]: PART_OF, [GRAFANA_SIDECAR_LABEL]: '1' },
      },
      data: { [DASHBOARD_FILE]: dashboardJson() },
    }),
  ];
}

import client from 'prom-client';
import type { RequestHandler, Express } from 'express';

/**
 * Prometheus metrics for one service process. Each service gets its own registry so
 * tests that start several apps in one process do not collide.
 */
export function createMetrics(service: string) {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
  const m = {
    registry,
    httpRequests: new client.Counter({ name: 'edgefl_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    httpDuration: new client.Histogram({ name: 'edgefl_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route', 'status'], buckets, registers: [registry] }),
    predictions: new client.Counter({ name: 'edgefl_predictions_total', help: 'Prediction requests answered', registers: [registry] }),
    imagesServed: new client.Counter({ name: 'edgefl_images_served_total', help: 'Images classified', registers: [registry] }),
    modelVersion: new client.Gauge({ name: 'edgefl_model_version', help: 'Model version currently loaded', registers: [registry] }),
    servingCanary: new client.Gauge({ name: 'edgefl_serving_canary', help: '1 while this serving function runs a canary (a version promoted to named nodes ahead of the fleet)', registers: [registry] }),
    promotedVersion: new client.Gauge({ name: 'edgefl_promoted_version', help: 'Model version promoted to the whole fleet', registers: [registry] }),
    modelLoadSeconds: new client.Gauge({ name: 'edgefl_model_load_seconds', help: 'Time to fetch, decode and install the model (cold-start cost)', labelNames: ['phase'], registers: [registry] }),
    trainingSeconds: new client.Histogram({ name: 'edgefl_training_duration_seconds', help: 'Local training duration per round', buckets, registers: [registry] }),
    trainingSamplesPerSecond: new client.Gauge({ name: 'edgefl_training_samples_per_second', help: 'Samples/s of the last local training', registers: [registry] }),
    roundSeconds: new client.Histogram({ name: 'edgefl_round_duration_seconds', help: 'Federated round duration', buckets, registers: [registry] }),
    roundParticipants: new client.Gauge({ name: 'edgefl_round_participants', help: 'Nodes whose update counted in the last round', registers: [registry] }),
    rounds: new client.Counter({ name: 'edgefl_rounds_total', help: 'Federated rounds finished, by outcome', labelNames: ['status'], registers: [registry] }),
    roundFailedNodes: new client.Gauge({ name: 'edgefl_round_failed_nodes', help: 'Selected nodes whose update did not count in the last round (failed, late or rejected)', registers: [registry] }),
    roundFailures: new client.Counter({ name: 'edgefl_round_node_failures_total', help: 'Node invocations that failed or missed the deadline', labelNames: ['node', 'reason'], registers: [registry] }),
    aggregationSeconds: new client.Histogram({ name: 'edgefl_aggregation_duration_seconds', help: 'Time to aggregate updates', buckets, registers: [registry] }),
    globalAccuracy: new client.Gauge({ name: 'edgefl_global_accuracy', help: 'Held-out accuracy of the latest global model', registers: [registry] }),
    asyncAggregations: new client.Counter({ name: 'edgefl_async_aggregations_total', help: 'Buffered asynchronous aggregations published (fedbuff)', registers: [registry] }),
    asyncStaleness: new client.Histogram({ name: 'edgefl_async_update_staleness', help: 'Aggregations an arriving asynchronous update is behind', buckets: [0, 1, 2, 3, 5, 8, 13, 21], registers: [registry] }),
    asyncDiscarded: new client.Counter({ name: 'edgefl_async_updates_discarded_total', help: 'Asynchronous updates not aggregated, by reason (stale, rejected)', labelNames: ['reason'], registers: [registry] }),
    // The local activator (services/harness/activator.ts): trainers started on demand.
    coldStarts: new client.Counter({ name: 'edgefl_activator_cold_starts_total', help: 'Trainer processes started on demand, by outcome', labelNames: ['outcome'], registers: [registry] }),
    coldStartSeconds: new client.Histogram({ name: 'edgefl_activator_cold_start_seconds', help: 'Spawn to ready of an on-demand trainer', buckets, registers: [registry] }),
    activeTrainers: new client.Gauge({ name: 'edgefl_activator_active_trainers', help: 'Trainer processes running (starting, training or idle)', registers: [registry] }),
    activatorInvocations: new client.Counter({ name: 'edgefl_activator_invocations_total', help: 'Requests the activator forwarded, by outcome', labelNames: ['outcome'], registers: [registry] }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Records every request under its route pattern (not the raw path, which would explode label cardinality). */
export function httpMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const route = req.route?.path ? String(req.baseUrl ?? '') + routePattern(req.route.path) : res.statusCode === 404 ? 'unmatched' : req.path;
      recordRequest(metrics, req.method, route, res.statusCode, start);
    });
    next();
  };
}

/** One answered request in the request counter and the duration histogram; `start` from process.hrtime.bigint(). */
export function recordRequest(metrics: Metrics, method: string, route: string, status: number, start: bigint): void {
  const labels = { method, route, status: String(status) };
  metrics.httpRequests.inc(labels);
  metrics.httpDuration.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
}

/** A readable label for a route: RegExp routes ('/^\\/v1\\/models\\/([^/:]+):predict$/') become '/v1/models/:name:predict'. */
export function routePattern(path: unknown): string {
  if (!(path instanceof RegExp)) return String(path);
  return path.source
    .replace(/^\^/, '')
    .replace(/\$$/, '')
    .replace(/\((?:[^()\\]|\\.)*\)/g, ':name')
    .replace(/\\(.)/g, '$1');
}

export function mountMetrics(app: Express, metrics: Metrics): void {
  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });
}

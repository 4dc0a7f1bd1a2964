import type express from 'express';

/** Dashboard routes mounted on the aggregator. */
export function mountDashboard(app: express.Express): void {
  app.get('/', (_req, res) => void res.json({ service: 'edgefl-aggregator', routes: ['/runs', '/models', '/nodes', '/events', '/metrics'] }));
}

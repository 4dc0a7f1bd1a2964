import express from 'express';
import type pg from 'pg';
import { z } from 'zod';
import { badRequest } from '../services/http/errors.js';
import { issuesText } from '../services/serving/inference-inputs.js';
import { listPredictions, predictionStats } from '../services/store/predictions.js';

const Query = z.object({
  minutes: z.coerce.number().int().min(1).max(7 * 24 * 60).default(60),
  limit: z.coerce.number().int().min(0).max(200).default(20),
});

/**
 * `GET /predictions/recent`: event-driven inference as the dashboard shows it, read from the
 * predictions table the serving functions write: per node, results, error records and latency
 * over the last `minutes`, and the newest `limit` records.
 */
export function predictionRoutes(pool: pg.Pool): express.Router {
  const router = express.Router();
  router.get('/predictions/recent', async (req, res) => {
    const q = Query.safeParse(req.query);
    if (!q.success) throw badRequest('invalid_query', issuesText(q.error, 'query'));
    const [nodes, recent] = await Promise.all([predictionStats(pool, q.data.minutes), q.data.limit ? listPredictions(pool, { limit: q.data.limit }) : []]);
    res.json({
      minutes: q.data.minutes,
      nodes,
      recent: recent.map((r) => ({ requestId: r.requestId, item: r.item, node: r.nodeId, source: r.source, class: r.class, modelVersion: r.modelVersion, error: r.error, latencyMs: r.latencyMs, at: r.createdAt })),
    });
  });
  return router;
}

import express, { type RequestHandler } from 'express';
import type pg from 'pg';
import { z } from 'zod';
import { decodeStoredWeights } from '../services/core/codec.js';
import { referenceModelSpec, tensorSpecsOf, type TensorSpec } from '../services/core/model.js';
import { versionModelSpec } from '../services/store/run-model.js';
import { HttpError, badRequest } from '../services/http/errors.js';
import type { Metrics } from '../services/shared/metrics.js';
import * as store from '../services/store/model-store.js';
import { PromotionError, effectivePromotion, listServing, promote, promotedFor, promotionHistory, promotionsInForce, type Promotion } from '../services/store/promotion.js';
import { RetentionPolicy, applyRetention } from '../services/store/retention.js';

/** The codec's integrity check: weights that fail it can never be promoted. */
export const verifyWeights = (m: store.ModelVersion, tensors: TensorSpec[] = referenceModelSpec()): void => void decodeStoredWeights(m.bytes, m.checksum, tensors);

const NODE_ID = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a node id such as node-1');
const PromoteBody = z.strictObject({
  /** Canary: only these edge nodes; absent or null: the whole fleet. */
  nodes: z.array(NODE_ID).min(1).max(1000).nullish(),
  reason: z.string().min(1).max(500).optional(),
});
const RollbackBody = z.strictObject({ nodes: PromoteBody.shape.nodes, reason: PromoteBody.shape.reason });
const PruneBody = RetentionPolicy.extend({ dryRun: z.boolean().default(false) });

/** A zod failure as the project's 400: the first issue, naming its field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length ? `'${issue.path.join('.')}'` : 'request body';
  throw badRequest(issue.code === 'unrecognized_keys' ? 'unknown_field' : 'invalid_field', `${field}: ${issue.message}`);
}

const STATUS_OF: Record<PromotionError['code'], number> = { model_not_found: 404, model_pruned: 409, model_corrupt: 422 };

export interface ModelRouteDeps {
  pool: pg.Pool;
  requireAdmin: RequestHandler;
  /** The edge nodes the fleet has (trainers known to the aggregator). */
  nodeIds: () => Promise<string[]>;
  metrics?: Metrics;
}

/** What each node serves according to the promotions in force (a canary naming a node wins over an older fleet promotion). */
export function servingPlan(nodeIds: readonly string[], inForce: readonly Promotion[]) {
  const named = inForce.flatMap((p) => p.nodes ?? []);
  return [...new Set([...nodeIds, ...named])].sort().map((nodeId) => {
    const p = effectivePromotion(inForce, nodeId);
    return { nodeId, version: p?.version ?? null, canary: p ? p.nodes !== null : false, promotionId: p?.id ?? null };
  });
}

/** Admin API of the model lifecycle: list, promote (fleet or canary), roll back, what is promoted, retention. */
export function mountModelRoutes(app: express.Express, deps: ModelRouteDeps): void {
  const json = express.json({ limit: '64kb' });
  // The gauge follows promotions from here and from run policies; start it from what is promoted already.
  void promotedFor(deps.pool).then((p) => p && deps.metrics?.promotedVersion.set(p.version), () => {});

  const doPromote = async (version: number, nodes: string[] | null | undefined, by: string, reason: string) => {
    if (nodes) {
      const known = await deps.nodeIds();
      const unknown = nodes.filter((n) => !known.includes(n));
      if (unknown.length) throw new HttpError(422, 'unknown_nodes', `no edge node known as: ${unknown.join(', ')} (known: ${known.join(', ') || 'none'})`);
    }
    const meta = await store.getModelMeta(deps.pool, version);
    try {
      const tensors = tensorSpecsOf(await versionModelSpec(deps.pool, version));
      const p = await promote(deps.pool, { version, nodes, by, reason, figures: figuresOf(meta), runId: meta?.runId ?? null }, (m) => verifyWeights(m, tensors));
      if (!p.nodes) deps.metrics?.promotedVersion.set(p.version);
      return p;
    } catch (e) {
      if (e instanceof PromotionError) throw new HttpError(STATUS_OF[e.code], e.code, e.message);
      throw e;
    }
  };

  app.get('/models', async (_req, res) => {
    const [models, inForce] = await Promise.all([store.listModels(deps.pool), promotionsInForce(deps.pool)]);
    const fleet = inForce.find((p) => p.nodes === null)?.version;
    const canary = new Set(inForce.filter((p) => p.nodes).map((p) => p.version));
    res.json({
      models: models.map((m) => ({ ...m, status: m.version === fleet ? 'promoted' : canary.has(m.version) ? 'canary' : m.prunedAt ? 'pruned' : 'candidate' })),
    });
  });

  app.get('/models/promoted', async (_req, res) => {
    const [inForce, history, nodeIds, reports] = await Promise.all([promotionsInForce(deps.pool), promotionHistory(deps.pool, { limit: 50 }), deps.nodeIds(), listServing(deps.pool)]);
    // What each node's serving function last reported it serves (it reports on every load), with that version's figures.
    const versions = [...new Set(reports.map((r) => r.version).filter((v): v is number => v !== null))];
    const figures = new Map(await Promise.all(versions.map(async (v) => [v, figuresOf(await store.getModelMeta(deps.pool, v))] as const)));
    const nodes = servingPlan([...nodeIds, ...reports.map((r) => r.nodeId)], inForce).map((n) => {
      const r = reports.find((x) => x.nodeId === n.nodeId);
      return { ...n, served: r ? { version: r.version, canary: r.canary, reportedAt: r.reportedAt, figures: r.version === null ? {} : figures.get(r.version) ?? {} } : null };
    });
    res.json({ fleet: inForce.find((p) => p.nodes === null) ?? null, nodes, history });
  });

  app.post('/models/:version/promote', deps.requireAdmin, json, async (req, res) => {
    const version = parseVersion(req.params.version);
    const body = parseBody(PromoteBody, req.body);
    const p = await doPromote(version, body.nodes, 'admin', body.reason ?? (body.nodes ? `canary on ${body.nodes.join(', ')}` : 'promoted by an admin'));
    res.status(201).json(p);
  });

  /** Rollback: promote again the newest earlier promoted version that is still loadable. */
  app.post('/models/rollback', deps.requireAdmin, json, async (req, res) => {
    const body = parseBody(RollbackBody, req.body);
    const scope = body.nodes?.[0];
    // A fleet rollback follows the fleet's own history; a canary rollback what the named node ran.
    const history = (await promotionHistory(deps.pool, { nodeId: scope, limit: 200 })).filter((p) => scope !== undefined || p.nodes === null);
    const current = history[0]?.version;
    for (const p of history) {
      if (p.version === current) continue;
      const meta = await store.getModelMeta(deps.pool, p.version);
      if (!meta || meta.prunedAt) continue;
      const out = await doPromote(p.version, body.nodes, 'admin', body.reason ?? `rollback from v${current} to v${p.version}`).catch((e) => {
        if (e instanceof HttpError && e.code === 'model_corrupt') return undefined;
        throw e;
      });
      if (out) return void res.status(201).json(out);
    }
    throw new HttpError(409, 'no_rollback_target', current === undefined ? 'nothing is promoted yet' : `no earlier promoted version than v${current} is still loadable`);
  });

  app.post('/models/prune', deps.requireAdmin, json, async (req, res) => {
    const { dryRun, ...policy } = parseBody(PruneBody, req.body);
    res.json({ dryRun, policy, ...(await applyRetention(deps.pool, policy, dryRun)) });
  });
}

function parseVersion(raw: unknown): number {
  const version = Number(raw);
  if (!Number.isSafeInteger(version) || version < 1) throw badRequest('invalid_version', 'version must be a positive integer');
  return version;
}

/** The held-out figures a version was judged on, as recorded when it was published. */
function figuresOf(meta: store.ModelVersionMeta | undefined): Record<string, unknown> {
  if (!meta) return {};
  const m = meta.metrics as Record<string, unknown>;
  const pick = ['accuracy', 'loss', 'validationAccuracy', 'testAccuracy', 'samples'].filter((k) => m[k] !== undefined);
  return { ...Object.fromEntries(pick.map((k) => [k, m[k]])), round: meta.round };
}

import type pg from 'pg';
import { REFERENCE_CNN, type ModelSpec } from '../core/model-spec.js';
import { parseModelSpec } from '../core/model-spec-schema.js';

type Queryable = pg.Pool | pg.PoolClient;

/**
 * Which model each run trains: its ModelSpec, stored when the run starts. Trainers and
 * serving functions read it from here (by run, or by a model version's run), so a new model
 * needs no new image. Runs and versions from before this table use the reference CNN.
 */
export async function saveRunModel(db: Queryable, runId: string, spec: ModelSpec, source: string): Promise<void> {
  await db.query('INSERT INTO run_models (run_id, spec, source) VALUES ($1, $2, $3) ON CONFLICT (run_id) DO NOTHING', [runId, JSON.stringify(spec), source]);
}

/** A stored spec is checked again on the way out: a hand-edited row must not build a broken model. */
function checked(value: unknown, where: string): ModelSpec {
  const parsed = parseModelSpec(value);
  if ('error' in parsed) throw new Error(`the stored model of ${where} is invalid: ${parsed.error}`);
  return parsed.spec;
}

export async function runModelSpec(db: Queryable, runId: string): Promise<ModelSpec> {
  const res = await db.query<{ spec: unknown }>('SELECT spec FROM run_models WHERE run_id = $1', [runId]);
  return res.rows[0] ? checked(res.rows[0].spec, `run ${runId}`) : REFERENCE_CNN;
}

/** The spec a model version's weights belong to: that of the run that produced it. */
export async function versionModelSpec(db: Queryable, version: number): Promise<ModelSpec> {
  const res = await db.query<{ spec: unknown }>(
    'SELECT rm.spec FROM model_versions mv JOIN run_models rm ON rm.run_id = mv.run_id WHERE mv.version = $1',
    [version],
  );
  return res.rows[0] ? checked(res.rows[0].spec, `model version ${version}`) : REFERENCE_CNN;
}

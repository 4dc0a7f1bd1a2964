import { initBackend } from '../core/backend.js';
import type { Config } from '../shared/config.js';
import { createLogger, type Logger } from '../shared/log.js';
import { memoryLimit } from '../shared/memory.js';
import { describeAuth, resolveAuth } from '../shared/secrets.js';
import { resolveNodeSecret } from '../shared/node-secret.js';
import { buildModel } from '../core/model.js';
import { listen } from '../http/runtime.js';
import { loadDeploymentModel, loadNodeShard, nodeDataFor, type NodeShardData } from '../core/node-data.js';
import { REFERENCE_CNN, type ModelSpec } from '../core/model-spec.js';
import { labelHistogram } from '../../datasets/types.js';
import { openDatabase } from '../store/database.js';
import { upsertNode } from '../store/model-store.js';
import { KNATIVE_TUNING, RESOURCES } from '../kube/constants.js';
import { createTrainerApp } from './app.js';
import { maxBatchForMemory } from './train-request.js';
import { deviceFromEnv } from './device-profile.js';
import { cachedNodeShard } from './shard-cache.js';
import type { NodeData } from './run-model.js';

export const nodeName = (id: number) => `node-${id}`;

/** The trainer's limit in the Knative manifests: a trainer run without a limit behaves as it would there. */
const MANIFEST_LIMIT_MIB = parseInt(RESOURCES.trainer.limits.memory, 10);

/** The node's data as the deployment's model takes it; unreadable data is logged here and fails each round with a 422. */
async function startupShard(cfg: Config, log: Logger): Promise<NodeShardData & { spec: ModelSpec; ok: boolean }> {
  let spec = REFERENCE_CNN;
  try {
    spec = loadDeploymentModel(cfg)?.spec ?? REFERENCE_CNN;
    if (cfg.nodeData) return { ...loadNodeShard(cfg, spec), spec, ok: true };
    // The built-in partition: this node's file from the shared cache, not the whole dataset cut again.
    const shard = await cachedNodeShard(cfg, (msg, fields) => log.info(msg, fields));
    return { shard, histogram: labelHistogram(shard.labels, Math.max(shard.numClasses, spec.classes)), skipped: 0, source: 'the built-in partition', spec, ok: true };
  } catch (e) {
    log.error('node data unusable; rounds will fail until it is fixed', { err: (e as Error).message });
    return { shard: emptySet(), histogram: [], skipped: 0, source: cfg.nodeData ?? '', spec, ok: false };
  }
}

/** Per run model: the data loaded at start-up serves every model of its input shape (it is not decoded again on the first round). */
function dataForRuns(cfg: Config, startup: Awaited<ReturnType<typeof startupShard>>): (spec: ModelSpec) => NodeData {
  const load = nodeDataFor(cfg);
  const shape = startup.spec.inputShape.join('x');
  return (spec) => (startup.ok && spec.inputShape.join('x') === shape ? { set: startup.shard, skipped: startup.skipped, source: startup.source } : load(spec));
}

const emptySet = () => ({ images: new Float32Array(0), labels: new Uint8Array(0), count: 0, rows: 0, cols: 0, numClasses: 0 });

/** Starts the training function: everything expensive happens here, once, before the first request. */
export async function startTrainer(cfg: Config) {
  const nodeId = nodeName(cfg.nodeId);
  const log = createLogger({ service: 'trainer', node: nodeId }, cfg.logLevel);
  // Authentication is settled before anything else: a trainer without its secret must not start at all.
  const auth = resolveAuth(cfg, 'trainer');
  const authLine = describeAuth('trainer', auth);
  log[authLine.level](authLine.msg, authLine.fields);
  const memory = memoryLimit(cfg.memoryLimitMiB, MANIFEST_LIMIT_MIB);
  // Per run model: a small model's batches take a fraction of the reference CNN's memory.
  const maxBatchSize = (spec: ModelSpec) => maxBatchForMemory(memory.mib, spec);
  // The database connects while the backend and the data load (a cold start waits on all three).
  const opening = openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => log.info(m), stopEmbeddedOnClose: true });
  opening.catch(() => {}); // awaited below; a failure there is the one reported
  const backend = await initBackend(cfg.backend, (m) => log.info(m));
  // The node's data as the deployment's model takes it; a run of another model reloads it in that shape.
  const startup = await startupShard(cfg, log);
  const { shard, histogram, skipped, source } = startup;
  if (skipped) log.warn('skipped unreadable data files', { skipped, source });
  const model = buildModel(1);
  const db = await opening;
  await upsertNode(db.pool, { id: nodeId, shardSize: shard.count, labelHistogram: histogram, info: { backend: backend.name, partition: cfg.partition.kind, alpha: cfg.partition.alpha } });
  log.info('node data ready', { samples: shard.count, histogram, backend: backend.name, memory_limit_mib: memory.mib, memory_limit_from: memory.source, max_batch_size: maxBatchSize(REFERENCE_CNN) });
  const device = deviceFromEnv(process.env);
  if (device) log.info('emulating an edge device', { slowdown: device.slowdown, fail_probability: device.failProbability });
  const app = createTrainerApp({ pool: db.pool, nodeId, shard, model, log, invokeSecret: auth.invokeSecret, maxBatchSize, dataFor: dataForRuns(cfg, startup), nodeSecret: resolveNodeSecret(cfg, nodeId), device });
  // A round in flight at SIGTERM finishes and stores its update: up to the revision timeout Knative grants.
  const server = await listen(app, { port: cfg.port, host: cfg.host }, log, () => db.close(), true, KNATIVE_TUNING.trainerTimeoutSeconds * 1000);
  return { server, db, app };
}

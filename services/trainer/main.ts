import { initBackend } from '../core/backend.js';
import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { memoryLimit } from '../shared/memory.js';
import { describeAuth, resolveAuth } from '../shared/secrets.js';
import { buildModel } from '../core/model.js';
import { listen } from '../http/runtime.js';
import { loadNodeShard } from '../core/node-data.js';
import { openDatabase } from '../store/database.js';
import { upsertNode } from '../store/model-store.js';
import { KNATIVE_TUNING, RESOURCES } from '../kube/constants.js';
import { createTrainerApp } from './app.js';
import { maxBatchForMemory } from './train-request.js';
import { deviceFromEnv } from './device-profile.js';

export const nodeName = (id: number) => `node-${id}`;

/** The trainer's limit in the Knative manifests: a trainer run without a limit behaves as it would there. */
const MANIFEST_LIMIT_MIB = parseInt(RESOURCES.trainer.limits.memory, 10);

/** Starts the training function: everything expensive happens here, once, before the first request. */
export async function startTrainer(cfg: Config) {
  const nodeId = nodeName(cfg.nodeId);
  const log = createLogger({ service: 'trainer', node: nodeId }, cfg.logLevel);
  // Authentication is settled before anything else: a trainer without its secret must not start at all.
  const auth = resolveAuth(cfg, 'trainer');
  const authLine = describeAuth('trainer', auth);
  log[authLine.level](authLine.msg, authLine.fields);
  const memory = memoryLimit(cfg.memoryLimitMiB, MANIFEST_LIMIT_MIB);
  const maxBatchSize = maxBatchForMemory(memory.mib);
  const backend = await initBackend(cfg.backend, (m) => log.info(m));
  const { shard, histogram } = loadNodeShard(cfg);
  const model = buildModel(1);
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => log.info(m), stopEmbeddedOnClose: true });
  await upsertNode(db.pool, { id: nodeId, shardSize: shard.count, labelHistogram: histogram, info: { backend: backend.name, partition: cfg.partition.kind, alpha: cfg.partition.alpha } });
  log.info('node data ready', { samples: shard.count, histogram, backend: backend.name, memory_limit_mib: memory.mib, memory_limit_from: memory.source, max_batch_size: maxBatchSize });
  const device = deviceFromEnv(process.env);
  if (device) log.info('emulating an edge device', { slowdown: device.slowdown, fail_probability: device.failProbability });
  const app = createTrainerApp({ pool: db.pool, nodeId, shard, model, log, invokeSecret: auth.invokeSecret, maxBatchSize, device });
  // A round in flight at SIGTERM finishes and stores its update: up to the revision timeout Knative grants.
  const server = await listen(app, { port: cfg.port, host: cfg.host }, log, () => db.close(), true, KNATIVE_TUNING.trainerTimeoutSeconds * 1000);
  return { server, db, app };
}

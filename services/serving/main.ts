import { initBackend } from '../core/backend.js';
import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { createMetrics } from '../shared/metrics.js';
import { resolveAuth } from '../shared/secrets.js';
import { listen } from '../http/runtime.js';
import { openDatabase } from '../store/database.js';
import { listenForPromotions } from '../store/listen.js';
import { createServingApp } from './app.js';
import { ModelHolder } from './model-holder.js';

/**
 * Starts the serving function. Backend, database connection and model are set up once
 * here, before the port opens, so every request — including the first after a cold
 * start — only runs inference. The start-up log line splits the cold start into phases.
 */
export async function startServing(cfg: Config) {
  const t0 = performance.now();
  const nodeId = `node-${cfg.nodeId}`;
  const log = createLogger({ service: 'serving', node: nodeId }, cfg.logLevel);
  const metrics = createMetrics('serving');
  resolveAuth(cfg, 'serving'); // refuses placeholder or short API keys
  // Public predict is a choice (edge devices call it); say so at start so it is never a surprise.
  log.info(cfg.apiKeys.length ? 'predict routes need an API key' : 'predict routes are public (set EDGEFL_API_KEYS to require a key)', { api_keys: cfg.apiKeys.length });
  // The backend compiles its wasm while the database connection and model fetch are in flight.
  const backendReady = initBackend(cfg.backend, (m) => log.info(m), { training: false });
  const db = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, log: (m) => log.info(m), poolSize: 3, stopEmbeddedOnClose: true });
  const t1 = performance.now();
  const holder = new ModelHolder(db.pool, log, metrics, nodeId);
  await holder.refresh(backendReady);
  const backend = await backendReady;
  const t2 = performance.now();
  // Serving follows promotions only: a new candidate version is not a reason to reload.
  const listener = listenForPromotions(
    db.url,
    () => void holder.onPromotion().catch((e) => log.warn('reload failed', { err: e })),
    () => void holder.refresh().catch((e) => log.warn('refresh failed', { err: e })),
    (m) => log.warn(m),
  );
  // NOTIFY is best-effort across reconnects; a poll every 10 s guarantees convergence.
  const poll = setInterval(() => void holder.refresh().catch(() => {}), 10_000);
  poll.unref();
  const app = createServingApp({ holder, log, nodeId, maxBatch: cfg.maxBatch, maxBodyBytes: cfg.maxBodyBytes, apiKeys: cfg.apiKeys, metrics, pool: db.pool, objectRoot: cfg.objectRoot });
  const server = await listen(app, { port: cfg.port, host: cfg.host }, log, async () => {
    clearInterval(poll);
    await listener.close();
    await db.close();
  });
  const startup = {
    module_load_ms: Math.round(t0),
    backend: backend.name,
    backend_init_ms: Math.round(backend.initMs),
    db_connect_ms: Math.round(t1 - t0),
    model_fetch_ms: Math.round(holder.lastTimings?.fetchMs ?? 0),
    model_decode_ms: Math.round(holder.lastTimings?.decodeMs ?? 0),
    model_install_ms: Math.round(holder.lastTimings?.installMs ?? 0),
    model_ready_ms: Math.round(t2 - t0),
    ready_ms: Math.round(performance.now() - t0),
    model_version: holder.current?.version ?? null,
    canary: holder.current?.canary ?? false,
  };
  log.info('serving ready', startup);
  return { server, db, holder, app, startup };
}

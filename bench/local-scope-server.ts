/**
 * The local-scope comparison server for `bench init`: unlike the serving function, it
 * keeps nothing between requests — every predict fetches the newest weights from
 * PostgreSQL, decodes them, builds the CNN, sets its weights, predicts and disposes it
 * (the "model loaded in the handler" anti-pattern). Only the TensorFlow.js backend and
 * the PostgreSQL connection pool live in global scope (with a pool-per-request, the
 * connection handshake would add to every request as well).
 *
 * Env: DATABASE_URL, PORT. Logs one JSON line 'local-scope ready' on stderr.
 */
import http from 'node:http';
import { initBackend } from '../services/core/backend.js';
import { decodeWeights } from '../services/core/codec.js';
import { argmaxRows, buildModel, predictProbabilities, referenceModelSpec, setFlatWeights, PIXELS } from '../services/core/model.js';
import { createPool } from '../services/store/database.js';
import { getLatestModel } from '../services/store/model-store.js';

const t0 = performance.now();
const backend = await initBackend(undefined);
const pool = createPool(process.env.DATABASE_URL ?? '', 3);
const port = Number(process.env.PORT ?? 0);

function log(msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: 'info', msg, service: 'local-scope', ...fields }) + '\n');
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, { live: true });
  if (req.method !== 'POST' || req.url !== '/v1/models/mnist:predict') return send(res, 404, { error: 'not found' });
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { instances?: number[][] };
  const instances = body.instances;
  if (!Array.isArray(instances) || instances.length === 0) return send(res, 400, { error: 'send {"instances": [[784 floats], ...]}' });
  const pixels = new Float32Array(instances.length * PIXELS);
  instances.forEach((row, i) => pixels.set(row, i * PIXELS));
  // Local scope: everything model-related happens inside the handler.
  const t1 = performance.now();
  const row = await getLatestModel(pool);
  if (!row) return send(res, 503, { error: 'no model published' });
  const t2 = performance.now();
  const flat = decodeWeights(row.bytes, referenceModelSpec()).flat;
  const model = buildModel(1);
  setFlatWeights(model, flat);
  const t3 = performance.now();
  try {
    const probs = predictProbabilities(model, pixels, instances.length);
    const t4 = performance.now();
    res.setHeader('server-timing', `fetch;dur=${(t2 - t1).toFixed(2)}, build;dur=${(t3 - t2).toFixed(2)}, predict;dur=${(t4 - t3).toFixed(2)}`);
    send(res, 200, { classes: argmaxRows(probs), model_version: String(row.version) });
  } finally {
    model.dispose();
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e: unknown) => {
    log('request failed', { err: (e as Error).message });
    if (!res.headersSent) send(res, 500, { error: (e as Error).message });
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  log('local-scope ready', { backend: backend.name, ready_ms: Math.round(performance.now() - t0), module_load_ms: Math.round(t0) });
});
const stop = () => {
  server.close();
  void pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

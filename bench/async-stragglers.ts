/**
 * async-stragglers (a one-off measurement for issue #14, not a registered benchmark): wall time
 * to a held-out accuracy for fedavg and fedbuff on the same federation of real processes
 * (aggregator and trainers, as `edgefl up` starts them), where some nodes are slow. Slowness is a
 * delay in a proxy before the node's trainer sees the request (a slow link, or a device that
 * starts late): it costs no CPU, so the fast nodes train as fast in both runs.
 *
 *   npm run build --silent && node dist/bench/async-stragglers.js [nodes] [slow] [delayS] [target] [samples]
 */
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../services/harness/ports.js';
import { stopAll } from '../services/harness/process.js';
import { ServiceProcess } from './lib/chaos-cluster.js';
import { openBenchEnv } from './lib/setup.js';

const [nodes = 4, slow = 1, delayS = 15, target = 0.97, samples = 1000] = process.argv.slice(2).map(Number);
const ADMIN = 'bench-admin-token';
const env = await openBenchEnv({ log: (m) => console.error(m) });
const logDir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-async-bench-'));
const common = { DATABASE_URL: env.databaseUrl, EDGEFL_NODES: String(nodes), EDGEFL_PARTITION: 'iid', EDGEFL_MAX_TRAIN_SAMPLES: String(samples), EDGEFL_TEST_SIZE: '1000', EDGEFL_LOG_LEVEL: 'warn', EDGEFL_INVOKE_SECRET: 'bench-invoke-secret', EDGEFL_ADMIN_TOKEN: ADMIN };

/** Forwards to `target` after `delayMs` (the whole request is read first, so the delay is the node's, not the aggregator's). */
async function delayProxy(target: string, delayMs: number): Promise<string> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (req.method === 'POST') await sleep(delayMs);
      const up = http.request(target + req.url, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const trainers = await Promise.all(Array.from({ length: nodes }, async (_, i) => new ServiceProcess(`trainer-${i}`, 'trainer', await freePort(), { ...common, EDGEFL_NODE_ID: String(i) }, logDir)));
const urls = await Promise.all(trainers.map((t, i) => (i >= nodes - slow ? delayProxy(t.url, delayS * 1000) : t.url)));
const aggregator = new ServiceProcess('aggregator', 'aggregator', await freePort(), { ...common, EDGEFL_TRAINER_URLS: urls.join(',') }, logDir);
await Promise.all([...trainers, aggregator].map((p) => p.start(300_000)));
console.log(`${nodes} nodes × ${samples} digits (iid), ${slow} slow by ${delayS} s per invocation, target ${target} on 1000 held-out digits; logs in ${logDir}`);

const api = async (p: string, body?: unknown) => {
  const res = await fetch(aggregator.url + p, body ? { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` }, body: JSON.stringify(body) } : {});
  return (await res.json()) as Record<string, any>;
};
for (const strategy of ['fedavg', 'fedbuff'] as const) {
  const { id } = await api('/runs', { strategy, epochs: 1, batchSize: 32, learningRate: 0.001, targetAccuracy: target, patience: 1000, rounds: 300, seed: 1 });
  let run = await api(`/runs/${id}`);
  const deadline = Date.now() + 20 * 60_000;
  while (run.status === 'running' && Date.now() < deadline) {
    await sleep(1000);
    run = await api(`/runs/${id}`);
  }
  const rounds = (run.rounds as { status: string; participants?: string[]; finishedAt: string; globalAccuracy: number }[]).filter((r) => r.status === 'completed');
  const slowIds = Array.from({ length: slow }, (_, k) => `node-${nodes - 1 - k}`);
  const slowUpdates = rounds.reduce((n, r) => n + (r.participants ?? []).filter((p) => slowIds.includes(p)).length, 0);
  const updates = rounds.reduce((n, r) => n + (r.participants?.length ?? 0), 0);
  const wallS = (Date.parse(run.updatedAt) - Date.parse(run.createdAt)) / 1000;
  console.log(JSON.stringify({ strategy, status: run.status, reason: run.stopReason, wall_s: Math.round(wallS), versions: rounds.length, best: run.bestAccuracy, updates, slow_share: updates ? Math.round((slowUpdates / updates) * 100) / 100 : null, async: run.async }));
  if (run.status === 'running') await fetch(`${aggregator.url}/runs/${id}/abort`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
}
await stopAll();
process.exit(0);

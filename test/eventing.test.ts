import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { encodeWeights, sha256Hex } from '../services/core/codec.js';
import { createLogger } from '../services/shared/log.js';
import { buildModel, getFlatWeights, referenceModelSpec } from '../services/core/model.js';
import * as store from '../services/store/model-store.js';
import { createTrainerApp } from '../services/trainer/app.js';
import { invokeTrainer } from '../aggregator/invoke.js';
import { builtinMnistSplit } from '../datasets/builtin-mnist.js';
import { subset } from '../datasets/types.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const quiet = createLogger({}, 'error', () => {});
let db: TestDatabase;
let trainer: http.Server;
let broker: http.Server;
let brokerUrl: string;
let version: number;
const seenByBroker: http.IncomingHttpHeaders[] = [];
/** What the trainer answered each delivery: the status decides whether a real broker redelivers. */
const deliveries: { status: number; type: string | null }[] = [];

beforeAll(async () => {
  await initBackend();
  db = await createTestDatabase();
  const model = buildModel(1);
  const bytes = encodeWeights(referenceModelSpec(), getFlatWeights(model));
  version = await store.publishModel(db.pool, { bytes, checksum: sha256Hex(bytes), manifest: { tensors: referenceModelSpec() } });
  const shard = subset(builtinMnistSplit().train, Array.from({ length: 64 }, (_, i) => i));
  const app = createTrainerApp({ pool: db.pool, nodeId: 'node-1', shard, model: buildModel(1), log: quiet, invokeSecret: 'broker-secret-0123456789' });
  trainer = app.listen(0);
  const trainerPort = (trainer.address() as { port: number }).port;
  // A stand-in for a Knative Broker + Trigger: routes by the edgeflnode attribute, drops the
  // Authorization header (as a broker does), answers 202 and delivers asynchronously.
  broker = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seenByBroker.push(req.headers);
      res.writeHead(202).end();
      if (req.headers['ce-edgeflnode'] !== '1') return;
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('ce-') || k === 'content-type')) as Record<string, string>;
      // Brokers announce that they accept reply events (data-plane contract).
      void fetch(`http://127.0.0.1:${trainerPort}/`, { method: 'POST', headers: { ...headers, prefer: 'reply' }, body: Buffer.concat(chunks) }).then((r) =>
        deliveries.push({ status: r.status, type: r.headers.get('ce-type') }),
      );
    });
  });
  await new Promise<void>((r) => broker.listen(0, '127.0.0.1', r));
  brokerUrl = `http://127.0.0.1:${(broker.address() as { port: number }).port}/`;
});

afterAll(async () => {
  trainer?.close();
  broker?.close();
  await db?.close();
});

describe('Knative Eventing mode', () => {
  it('sends the round through the broker with routing and auth attributes, then finds the stored update', async () => {
    const deadline = new Date(Date.now() + 60_000);
    const outcome = await invokeTrainer(
      { nodeId: 'node-1', url: 'http://unused.invalid/' },
      { runId: 'evt-run', round: 1, modelVersion: version, epochs: 1, batchSize: 32, learningRate: 0.001, deadline: deadline.toISOString() },
      {
        deadline,
        secret: 'broker-secret-0123456789',
        brokerUrl,
        findUpdate: async () => {
          const u = await store.findUpdate(db.pool, 'evt-run', 1, 'node-1');
          return u ? { updateId: u.id, metrics: u.metrics } : undefined;
        },
      },
    );
    expect(outcome.ok).toBe(true);
    const sent = seenByBroker[0]!;
    expect(sent['ce-type']).toBe('dev.edgefl.round.train');
    expect(sent['ce-edgeflnode']).toBe('1');
    expect(sent.authorization).toBeUndefined();
    // The token travels in the event, bound to this node, run, round and base version.
    const [v, payload] = String(sent['ce-edgeflauth']).split('.');
    expect(v).toBe('v2');
    expect(JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'))).toMatchObject({ n: 'node-1', r: 'evt-run', k: 1, b: version });
    // The trainer answered the delivery with 200 and a reply event, the only 2xx the contract defines for a reply.
    await vi.waitFor(() => expect(deliveries).toHaveLength(1), { timeout: 10_000 });
    expect(deliveries[0]).toEqual({ status: 200, type: 'dev.edgefl.update.ready' });
    const stored = await store.findUpdate(db.pool, 'evt-run', 1, 'node-1');
    expect(outcome.ok && outcome.updateId).toBe(stored!.id);
  });

  it('a trainer refuses a broker-delivered event whose token is forged', async () => {
    const port = (trainer.address() as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'x1', 'ce-source': '/test', 'ce-type': 'dev.edgefl.round.train', 'ce-edgeflauth': 'v2.eyJuIjoibm9kZS0xIn0.forged' },
      body: JSON.stringify({ runId: 'evt-run', round: 2, modelVersion: version }),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    expect(await store.findUpdate(db.pool, 'evt-run', 2, 'node-1')).toBeUndefined();
  });
});

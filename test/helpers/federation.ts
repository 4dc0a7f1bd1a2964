import type http from 'node:http';
import { vi } from 'vitest';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { initBackend } from '../../services/core/backend.js';
import { decodeWeights, encodeWeights, sha256Hex } from '../../services/core/codec.js';
import { createLogger, type Logger } from '../../services/shared/log.js';
import { buildModel, referenceModelSpec } from '../../services/core/model.js';
import { createTrainerApp } from '../../services/trainer/app.js';
import { serve, type Running } from './serve.js';
import * as store from '../../services/store/model-store.js';
import { loadDataset } from '../../datasets/index.js';
import { subset, type ImageSet, type TrainTestSplit } from '../../datasets/types.js';
import { createRng, normal } from '../../datasets/rng.js';
import { Federation } from '../../aggregator/federation.js';
import type { TrainerTarget } from '../../aggregator/invoke.js';

export const quietLog: Logger = createLogger({ test: true }, (process.env.EDGEFL_TEST_LOG as 'info') ?? 'error');

let split: TrainTestSplit | undefined;
/** The built-in digits with a small held-out set (evaluation stays well under a second). */
export async function testData(testSize = 300): Promise<TrainTestSplit> {
  await initBackend();
  split ??= loadDataset({ dataset: 'mnist', testSize, seed: 42 });
  return split;
}

/** Disjoint IID slices of the training set. */
export function shards(train: ImageSet, count: number, size: number, offset = 0): ImageSet[] {
  return Array.from({ length: count }, (_, k) => subset(train, Array.from({ length: size }, (_, i) => offset + k * size + i)));
}

export { serve, type Running } from './serve.js';

/** A real trainer function, in-process, on a small shard. */
export async function startTrainer(pool: pg.Pool, nodeId: string, shard: ImageSet, extra: { invokeSecret?: string } = {}): Promise<Running> {
  await initBackend();
  const app = createTrainerApp({ pool, nodeId, shard, model: buildModel(1), log: quietLog, invokeSecret: extra.invokeSecret });
  return serve(app);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Never answers (its sockets stay open until the test closes it). */
/** The federation's view of running trainers: one target per node id, in the order given. */
export const targetsOf = (trainers: Record<string, Running>): TrainerTarget[] => Object.entries(trainers).map(([nodeId, r]) => ({ nodeId, url: r.url }));

export const hangingTrainer = () => serve(() => {});
export const statusTrainer = (status: number) =>
  serve(async (req, res) => {
    await readBody(req);
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'fake', message: `always ${status}` } }));
  });

export type Attack = 'scaled' | 'random' | 'wrong-manifest' | 'nan' | 'bad-checksum';

/**
 * A malicious node: it does not train, it writes its own update row (the global model
 * ×50, or random weights) and answers like a trainer with the updateId.
 */
export async function maliciousTrainer(pool: pg.Pool, nodeId: string, attack: Attack, samples: number, seed = 99): Promise<Running & { sent: number }> {
  const rng = createRng(seed);
  const state = { sent: 0 };
  const running = await serve(async (req, res) => {
    try {
      const data = JSON.parse(await readBody(req)) as { runId: string; round: number; modelVersion: number };
      const base = await store.getModel(pool, data.modelVersion);
      const global = decodeWeights(base!.bytes, referenceModelSpec()).flat;
      const flat = new Float32Array(global.length);
      for (let i = 0; i < flat.length; i++) flat[i] = attack === 'scaled' ? global[i]! * 50 : attack === 'random' ? normal(rng) : global[i]!;
      let bytes = encodeWeights(referenceModelSpec(), flat);
      let checksum = sha256Hex(bytes);
      if (attack === 'wrong-manifest') {
        bytes = encodeWeights([{ name: 'conv1/kernel', shape: [flat.length] }], flat);
        checksum = sha256Hex(bytes);
      } else if (attack === 'nan') {
        // a NaN in the data with a valid codec trailer: only the finiteness check can catch it
        const manifestLength = bytes.readUInt32LE(8);
        bytes.writeFloatLE(NaN, 12 + manifestLength + 4 * 10);
        createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest().copy(bytes, bytes.length - 32);
        checksum = sha256Hex(bytes);
      } else if (attack === 'bad-checksum') {
        checksum = '0'.repeat(64);
      }
      const { update } = await store.insertUpdate(pool, {
        runId: data.runId,
        round: data.round,
        nodeId,
        baseVersion: data.modelVersion,
        bytes,
        checksum,
        sampleCount: samples,
        metrics: { loss: 0.01, accuracy: 0.99 },
        durationMs: 1,
      });
      state.sent++;
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ updateId: update.id, runId: data.runId, round: data.round, nodeId }));
    } catch (e) {
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'internal', message: String(e) } }));
    }
  });
  return Object.assign(running, {
    get sent() {
      return state.sent;
    },
  });
}

export async function createFederation(pool: pg.Pool, heldOut: ImageSet, targets: () => TrainerTarget[], extra: { invokeSecret?: string } = {}) {
  await initBackend();
  return new Federation({ pool, log: quietLog, heldOut, trainers: async () => targets(), retryBackoffMs: 100, invokeSecret: extra.invokeSecret });
}

/** vi.waitFor until `check` returns something truthy; the error names what was awaited. */
export function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000, intervalMs = 100): Promise<T> {
  return vi.waitFor(
    async () => {
      const v = await check();
      if (!v) throw new Error(`still waiting for ${what}`);
      return v;
    },
    { timeout: timeoutMs, interval: intervalMs },
  );
}

export async function waitRunDone(pool: pg.Pool, runId: string, timeoutMs = 90_000): Promise<store.RunRow> {
  return waitFor(`run ${runId} to finish`, async () => {
    const run = await store.getRun(pool, runId);
    return run && run.status !== 'running' ? run : undefined;
  }, timeoutMs, 200);
}

/** Base run config for tests: small, fast, never stops early on its own. */
export const FAST = { epochs: 1, batchSize: 16, learningRate: 0.002, targetAccuracy: 1, patience: 100 } as const;

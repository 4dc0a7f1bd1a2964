import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../aggregator/run-config.js';
import { HttpError } from '../services/http/errors.js';
import { quietLog } from './helpers/federation.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { runSecaggStage, storeMaskedInput, type SecaggDeps } from '../services/trainer/secagg-round.js';
import { parseTrainRequest } from '../services/trainer/train-request.js';
import * as secaggStore from '../services/store/secagg.js';
import { deriveNodeSecret, resolveNodeSecret } from '../services/shared/node-secret.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SECRET = randomBytes(32).toString('base64');
const IDS = ['node-a', 'node-b', 'node-c'];
const RUN = 'stages-run';
let db: TestDatabase;
let deps: Map<string, SecaggDeps>;

beforeAll(async () => {
  db = await createTestDatabase();
  deps = new Map(IDS.map((nodeId) => [nodeId, { pool: db.pool, nodeId, invokeSecret: SECRET, nodeSecret: randomBytes(32), sampleCount: 50 }]));
});
afterAll(() => db?.close());

/** A stage request as the aggregator sends it (parsed by the trainer's own schema). */
const request = (stage: string, extra: Record<string, unknown> = {}, round = 1) =>
  parseTrainRequest({ runId: RUN, round, modelVersion: 1, secagg: { stage, attempt: 1, threshold: 2, ...extra } }) as ReturnType<typeof parseTrainRequest> & { secagg: NonNullable<ReturnType<typeof parseTrainRequest>['secagg']> };
const stage = (node: string, stageName: string, extra: Record<string, unknown> = {}, round = 1) => runSecaggStage(deps.get(node)!, request(stageName, extra, round), quietLog);

async function refusal(p: Promise<unknown>): Promise<HttpError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(HttpError);
  return e as HttpError;
}

describe('trainer stages against a curious or tampering aggregator', () => {
  it('run the protocol, and refuse to reveal a mask key of a node whose masked input is stored', async () => {
    for (const id of IDS) await stage(id, 'advertise');
    for (const id of IDS) await stage(id, 'share', { roster: IDS });
    const global = new Float32Array(10);
    for (const id of IDS) await storeMaskedInput(deps.get(id)!, request('mask', { roster: IDS }), global, Float32Array.from({ length: 10 }, () => 0.01), {}, 1);
    // Claiming node-c dropped would make node-a reveal node-c's mask key, and with b_c that unmasks node-c's input.
    const e = await refusal(stage('node-a', 'unmask', { roster: IDS, survivors: ['node-a', 'node-b'] }));
    expect([e.status, e.code]).toEqual([409, 'secagg_not_dropped']);
    expect(await secaggStore.listUnmask(db.pool, { runId: RUN, round: 1, attempt: 1 })).toEqual([]);
  });

  it('answers unmask once: a second request with other survivors is refused', async () => {
    const first = await stage('node-a', 'unmask', { roster: IDS, survivors: IDS });
    expect(first?.created).toBe(true);
    expect((await stage('node-a', 'unmask', { roster: IDS, survivors: IDS }))?.id).toBe(first?.id);
    const e = await refusal(stage('node-a', 'unmask', { roster: IDS, survivors: ['node-a', 'node-c'] }));
    expect([e.status, e.code]).toEqual([409, 'secagg_unmask_conflict']);
  });

  it('refuses to reveal anything for fewer survivors than the threshold', async () => {
    const e = await refusal(stage('node-b', 'unmask', { roster: IDS, survivors: ['node-b'] }));
    expect(e.code).toBe('secagg_below_threshold');
  });

  it('refuses to share with a node whose advertised keys were replaced in the database', async () => {
    for (const id of IDS) await stage(id, 'advertise', {}, 2);
    await db.pool.query(`UPDATE secagg_keys SET s_public = $1 WHERE run_id = $2 AND round = 2 AND node_id = 'node-c'`, [randomBytes(32), RUN]);
    const e = await refusal(stage('node-a', 'share', { roster: IDS }, 2));
    expect([e.code, e.message]).toEqual(['secagg_forged_keys', 'the keys stored for node node-c fail authentication: they were not written by that node']);
  });

  it('refuses secure aggregation without a node secret or without authentication', async () => {
    const bare = { ...deps.get('node-a')!, nodeSecret: undefined };
    expect((await refusal(runSecaggStage(bare, request('advertise', {}, 3), quietLog))).code).toBe('secagg_no_node_secret');
    const open = { ...deps.get('node-a')!, invokeSecret: undefined };
    expect((await refusal(runSecaggStage(open, request('advertise', {}, 3), quietLog))).code).toBe('secagg_unauthenticated');
  });
});

describe('node long-term secrets', () => {
  it('come from EDGEFL_NODE_SECRET, or locally from one master file: distinct per node, stable across restarts', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgefl-node-secret-'));
    const a = resolveNodeSecret({ dataDir: dir }, 'node-0', {})!;
    expect(resolveNodeSecret({ dataDir: dir }, 'node-0', {})).toEqual(a);
    expect(resolveNodeSecret({ dataDir: dir }, 'node-1', {})!.equals(a)).toBe(false);
    expect(a).toEqual(deriveNodeSecret(Buffer.from(readFileSync(path.join(dir, 'node-master.key'), 'utf8').trim(), 'base64'), 'node-0'));
    expect(resolveNodeSecret({ dataDir: dir, databaseUrl: 'postgres://x' }, 'node-0', {})).toBeUndefined();
    expect(resolveNodeSecret({ dataDir: dir, databaseUrl: 'postgres://x' }, 'node-0', { EDGEFL_NODE_SECRET: 'k'.repeat(40) })!.toString()).toBe('k'.repeat(40));
    expect(() => resolveNodeSecret({ dataDir: dir }, 'node-0', { EDGEFL_NODE_SECRET: 'short' })).toThrow(/at least 32/);
  });
});

describe('POST /runs settings', () => {
  const status = (body: unknown) => {
    try {
      parseRunConfig(body);
      return { status: 201 };
    } catch (e) {
      return { status: (e as HttpError).status, message: (e as HttpError).message };
    }
  };
  it('refuses strategies that need individual updates, and per-update norm screening, with a 400', () => {
    expect(status({ strategy: 'median', secagg: { threshold: 2 } })).toMatchObject({ status: 400, message: expect.stringMatching(/median needs every node's update/) });
    expect(status({ strategy: 'trimmed-mean', secagg: {} })).toMatchObject({ status: 400 });
    expect(status({ strategy: 'secagg-fedavg', maxUpdateNorm: 5 })).toMatchObject({ status: 400, message: expect.stringMatching(/cannot screen individual updates/) });
    expect(status({ strategy: 'secagg-fedavg', secagg: { bits: 40 } })).toMatchObject({ status: 400 });
  });
  it('accepts secure aggregation alone, with its settings, and with client-level or record-level DP', () => {
    expect(status({ strategy: 'secagg-fedavg' }).status).toBe(201);
    expect(status({ strategy: 'secagg-fedavg', secagg: { threshold: 3, clipRange: 8, bits: 22 } }).status).toBe(201);
    expect(status({ strategy: 'secagg-fedavg', dp: { mode: 'central', epsilonBudget: 10, noiseMultiplier: 1, clip: 0.5 } }).status).toBe(201);
    expect(status({ strategy: 'secagg-fedavg', dp: { mode: 'local', epsilonBudget: 10, noiseMultiplier: 1 } }).status).toBe(201);
    expect(parseRunConfig({ strategy: 'secagg-fedavg' }).minQuorum).toBe(2);
  });
});

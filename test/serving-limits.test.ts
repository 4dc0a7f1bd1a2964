import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PNG } from 'pngjs';
import { initBackend } from '../services/core/backend.js';
import { buildModel, getFlatWeights, PIXELS } from '../services/core/model.js';
import { SpecModel } from '../services/core/forward.js';
import { REFERENCE_CNN } from '../services/core/model-spec.js';
import { createLogger } from '../services/shared/log.js';
import { WorkBudget } from '../services/serving/admission.js';
import { createServingApp } from '../services/serving/app.js';
import { PredictBatcher } from '../services/serving/batcher.js';
import { countJsonValues } from '../services/serving/body.js';
import { parseJsonInTurns } from '../services/serving/json-turns.js';
import { TRICKY_JSON_DOCS } from './helpers/json-docs.js';
import { Overloaded, TooLarge } from '../services/serving/errors.js';
import { ENV } from '../services/shared/config.js';
import { DEFAULT_MEMORY_LIMIT_MIB, detectMemoryLimit, servingLimits, type ServingLimits } from '../services/serving/limits.js';
import type { LoadedModel, ModelHolder } from '../services/serving/model-holder.js';

/** Memory-bounded serving (issue #12, point 1): limits from the memory limit, checks before allocation, shedding, yielding. */
let loaded: LoadedModel;
const servers: http.Server[] = [];
const log = createLogger({ service: 'limits-test' }, 'error', () => {});

beforeAll(async () => {
  await initBackend('wasm');
  loaded = { version: 3, model: new SpecModel(REFERENCE_CNN, getFlatWeights(buildModel(1))), checksum: 'c', metrics: {}, createdAt: '', loadedAt: '' };
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  loaded.model.dispose();
});

function serve(limits: ServingLimits): Promise<string> {
  // The model is handed over directly: these tests are about request handling, not loading.
  const app = createServingApp({ holder: { current: loaded } as ModelHolder, log, nodeId: 'node-0', maxBatch: limits.maxBatch, maxBodyBytes: limits.maxBodyBytes, limits });
  return new Promise((resolve) => {
    const server = http.createServer(app).listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
    servers.push(server);
  });
}

const limits256 = () => servingLimits({ mib: 256, source: ENV.memoryLimitMiB }, { maxBatch: 10_000, maxBodyBytes: 64 * 2 ** 20 });

describe('limits derived from the memory limit', () => {
  it('reads EDGEFL_MEMORY_LIMIT_MIB, else the cgroup v2 then v1 limit, else the manifests\' 256 MiB', () => {
    const files = (map: Record<string, string>) => (p: string) => {
      if (!(p in map)) throw new Error('ENOENT');
      return map[p]!;
    };
    expect(detectMemoryLimit({ EDGEFL_MEMORY_LIMIT_MIB: '512' }, files({ '/sys/fs/cgroup/memory.max': '1048576\n' }))).toEqual({ mib: 512, source: ENV.memoryLimitMiB });
    expect(detectMemoryLimit({}, files({ '/sys/fs/cgroup/memory.max': `${256 * 2 ** 20}\n` }))).toEqual({ mib: 256, source: 'cgroup' });
    expect(detectMemoryLimit({}, files({ '/sys/fs/cgroup/memory.max': 'max\n', '/sys/fs/cgroup/memory/memory.limit_in_bytes': `${384 * 2 ** 20}` }))).toEqual({ mib: 384, source: 'cgroup' });
    expect(detectMemoryLimit({}, files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712' }))).toEqual({ mib: DEFAULT_MEMORY_LIMIT_MIB, source: 'default' });
    expect(detectMemoryLimit({}, files({}))).toEqual({ mib: 256, source: 'default' });
    expect(() => detectMemoryLimit({ EDGEFL_MEMORY_LIMIT_MIB: '12x' }, files({}))).toThrow(/EDGEFL_MEMORY_LIMIT_MIB/);
  });

  it('a smaller function gets smaller limits; configured limits can only lower them', () => {
    const small = servingLimits({ mib: 170, source: ENV.memoryLimitMiB }, { maxBatch: 10_000, maxBodyBytes: 64 * 2 ** 20 });
    const big = limits256();
    expect(small.workBudgetBytes).toBeLessThan(big.workBudgetBytes);
    expect(small.maxBodyBytes).toBeLessThan(big.maxBodyBytes);
    expect(small.imagePixelBudget).toBeLessThan(big.imagePixelBudget);
    expect(big.maxBodyBytes).toBeLessThan(64 * 2 ** 20);
    expect(servingLimits({ mib: 256, source: ENV.memoryLimitMiB }, { maxBatch: 4, maxBodyBytes: 1000 })).toMatchObject({ maxBatch: 4, maxBodyBytes: 1000 });
  });

  it('counts values and containers of a JSON body without parsing it', () => {
    expect(countJsonValues(Buffer.from('{"instances":[[0,0.5,1],[1,2]]}'))).toEqual({ values: 5, containers: 4 });
  });

  it('counts four bytes at a time exactly as one at a time, at every alignment and length', () => {
    const oneAtATime = (b: Uint8Array) => ({ values: b.filter((x) => x === 0x2c).length + 1, containers: b.filter((x) => x === 0x5b || x === 0x7b).length });
    // The three counted bytes, their neighbours and bit-flipped look-alikes (0x0c, 0xab, 0xdb, 0xfb: one bit from one of them), 0x00 and 0xff.
    const alphabet = [0x2c, 0x5b, 0x7b, 0x2b, 0x2d, 0x5a, 0x5d, 0x7d, 0x0c, 0xab, 0xdb, 0xfb, 0x00, 0xff, 0x30];
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % alphabet.length;
    const backing = new Uint8Array(64);
    for (let trial = 0; trial < 3000; trial++) {
      for (let i = 0; i < backing.length; i++) backing[i] = alphabet[next()]!;
      const offset = trial % 4;
      const bytes = backing.subarray(offset, offset + (trial % 53));
      expect(countJsonValues(bytes)).toEqual(oneAtATime(bytes));
    }
  });
});

describe('load shedding', () => {
  it('the work budget refuses a reservation past it (429-able) and one that could never fit (413-able); release is idempotent', () => {
    const budget = new WorkBudget(100, () => {});
    const a = budget.reserve(60);
    expect(() => budget.reserve(50)).toThrow(Overloaded);
    expect(() => budget.reserve(101)).toThrow(TooLarge);
    a();
    a();
    expect(budget.inUse).toBe(0);
    expect(budget.reserve(100)).toBeTypeOf('function');
  });

  it('answers 429 with Retry-After while requests in flight hold the budget, and serves again once they are answered', async () => {
    const limits = { ...limits256(), workBudgetBytes: 400_000 };
    const url = await serve(limits);
    const one = JSON.stringify({ instances: [Array(PIXELS).fill(0)] });
    // A request whose body is still arriving holds its reservation.
    const holder = http.request(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 398_000 } });
    holder.on('error', () => {});
    holder.write('{"instances": [');
    let shed: Response | undefined;
    await vi.waitFor(async () => {
      shed = await fetch(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: one });
      expect(shed.status).toBe(429);
    });
    expect(shed!.headers.get('retry-after')).toBe('1');
    expect(((await shed!.json()) as { code: string }).code).toBe('overloaded');
    const v2 = await fetch(`${url}/v2/models/mnist/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'images', shape: [1, PIXELS], datatype: 'FP32', data: Array(PIXELS).fill(0) }] }) });
    expect(v2.status).toBe(429);
    expect(Object.keys(await v2.json())).toEqual(['error']);
    holder.destroy();
    await vi.waitFor(async () => {
      const res = await fetch(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: one });
      expect(res.status).toBe(200);
    });
  });
});

describe('checked before anything large is allocated', () => {
  it('a body of a million empty arrays is refused from its byte count (413 too_many_arrays), not parsed', async () => {
    const url = await serve(limits256());
    const body = `{"instances":[${Array(1_000_000).fill('[]').join(',')}]}`;
    const res = await fetch(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('too_many_arrays');
  });

  it('a 4096x4096 PNG is refused from its header (413), before a byte of it is decoded', async () => {
    const url = await serve(limits256());
    const png = new PNG({ width: 28, height: 28 });
    const bytes = Buffer.from(PNG.sync.write(png));
    bytes.writeUInt32BE(4096, 16);
    bytes.writeUInt32BE(4096, 20);
    const res = await fetch(`${url}/v1/models/mnist:classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(bytes) });
    expect(res.status).toBe(413);
    expect((await res.json()) as { code: string }).toMatchObject({ code: 'image_too_large' });
  });

  it('a body over the memory-derived limit is refused from its Content-Length', async () => {
    const limits = limits256();
    const url = await serve(limits);
    const res = await fetch(`${url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"pad":"${'x'.repeat(limits.maxBodyBytes)}"}` });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('body_too_large');
  });
});

describe('JSON parsed in turns of the event loop', () => {
  const docs = TRICKY_JSON_DOCS;

  it('gives what JSON.parse gives, with the tensor cut into many groups', async () => {
    for (const doc of docs) {
      const text = JSON.stringify(doc);
      const parsed = await parseJsonInTurns(Buffer.from(text), 4);
      expect(JSON.stringify(parsed)).toBe(text);
      expect(Object.getPrototypeOf(parsed)).toBe(Object.getPrototypeOf(doc));
    }
  });

  it('takes several turns for a large body, and refuses what JSON.parse refuses', async () => {
    const loop = countLoopTurns();
    const text = JSON.stringify({ instances: Array.from({ length: 200 }, (_, i) => Array(PIXELS).fill(i % 2)) });
    const parsed = await parseJsonInTurns(Buffer.from(text), 16 * 1024);
    loop.stop();
    expect(JSON.stringify(parsed)).toBe(text);
    expect(loop.turns).toBeGreaterThanOrEqual(Math.floor(text.length / (16 * 1024)) - 1);
    for (const bad of ['{"instances":[[1,2],[3,4],]}', '{"instances":[[1,2],[3,4]]', '{"instances":[[1,2] [3,4]]}', '{"a":[1,2,3,4,5,6,7,8]]', ']]]][[[[']) {
      await expect(parseJsonInTurns(Buffer.from(bad), 2)).rejects.toThrow();
    }
  });
});

describe('long predictions yield to the event loop', () => {
  it('a 512-image prediction lets the event loop turn between chunks, and a small request queued behind it finishes first', async () => {
    const batcher = new PredictBatcher(() => loaded, { chunk: 64 });
    const loop = countLoopTurns();
    const order: string[] = [];
    const big = batcher.predict(new Float32Array(512 * PIXELS), 512).then((r) => order.push('big') && r);
    await new Promise((r) => setImmediate(r));
    const small = batcher.predict(new Float32Array(PIXELS), 1).then((r) => order.push('small') && r);
    const [b, s] = await Promise.all([big, small]);
    loop.stop();
    expect(b.probs).toHaveLength(512 * 10);
    expect(s.probs).toHaveLength(10);
    expect(loop.turns).toBeGreaterThanOrEqual(512 / 64 - 1);
    expect(order).toEqual(['small', 'big']);
  });
});

describe('V8 heap sized for the memory limit', () => {
  it('gives half the limit to the old space and marks only such a heap as bounded', async () => {
    const { heapBoundedFor, servingHeapOptions, servingNodeOptions } = await import('../services/serving/limits.js');
    expect(servingHeapOptions(256)).toBe('--max-old-space-size=128 --max-semi-space-size=2');
    expect(servingNodeOptions(256, '--enable-source-maps')).toBe('--enable-source-maps --max-old-space-size=128 --max-semi-space-size=2');
    // V8's heap_size_limit with those flags is ~140 MiB; Node's default on this machine is several GiB.
    expect(heapBoundedFor(256, 140 * 2 ** 20)).toBe(true);
    expect(heapBoundedFor(256, 4096 * 2 ** 20)).toBe(false);
  });
});

/** Counts turns of the event loop (one setImmediate each) until stop(): how often long work let others run. */
function countLoopTurns(): { readonly turns: number; stop(): void } {
  let turns = 0;
  let done = false;
  const tick = () => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get turns() {
      return turns;
    },
    stop: () => void (done = true),
  };
}

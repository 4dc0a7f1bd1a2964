import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../services/core/backend.js';
import { SpecModel } from '../services/core/forward.js';
import { buildModel, getFlatWeights, PIXELS } from '../services/core/model.js';
import { REFERENCE_CNN } from '../services/core/model-spec.js';
import { createLogger } from '../services/shared/log.js';
import { createMetrics } from '../services/shared/metrics.js';
import { createServingApp } from '../services/serving/app.js';
import { directPredict, type DirectRoute } from '../services/serving/direct-predict.js';
import { IdleTrim } from '../services/serving/idle-trim.js';
import { InvalidInput } from '../services/serving/errors.js';
import type { LoadedModel, ModelHolder } from '../services/serving/model-holder.js';
import { serverGroup } from './helpers/serve.js';

// The prediction routes answered without Express (direct-predict.ts): the same answers as through Express.
const KEY = 'k'.repeat(40);
let loaded: LoadedModel;
const servers = serverGroup();
let direct: string;
let express: string;
const log = createLogger({ service: 'direct-test' }, 'error', () => {});

beforeAll(async () => {
  await initBackend('wasm');
  const m = buildModel(1);
  loaded = { version: 7, model: new SpecModel(REFERENCE_CNN, getFlatWeights(m)), checksum: 'c', metrics: {}, createdAt: '', loadedAt: '' };
  m.dispose();
  const deps = { holder: { current: loaded } as ModelHolder, log, nodeId: 'node-0', maxBatch: 4, maxBodyBytes: 64 * 1024, apiKeys: [KEY] };
  direct = (await servers.listen(createServingApp(deps))).url;
  express = (await servers.listen(createServingApp({ ...deps, direct: false }))).url;
});

afterAll(async () => {
  await servers.closeAll();
  loaded.model.dispose();
});

const image = (k: number) => Array.from({ length: PIXELS }, (_, i) => ((i * 13 + k) % 256) / 255);
const auth = { authorization: `Bearer ${KEY}` };
const json = { 'content-type': 'application/json', ...auth };

function binaryInfer(outputsBinary: boolean) {
  const data = Buffer.from(Uint8Array.from({ length: 2 * PIXELS }, (_, i) => (i * 7) % 256));
  const header = Buffer.from(
    JSON.stringify({ inputs: [{ name: 'images', shape: [2, 28, 28, 1], datatype: 'UINT8', parameters: { binary_data_size: data.length } }], parameters: { binary_data_output: outputsBinary } }),
  );
  return { headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length), ...auth }, body: Buffer.concat([header, data]) };
}

const requests: [string, string, Record<string, string>, string | Buffer][] = [
  ['TF rows', '/v1/models/mnist:predict', json, JSON.stringify({ instances: [image(0), image(1)] })],
  ['TF columnar, named', '/v1/models/mnist:predict?debug=1', { ...json, 'x-request-id': 'client-id-1' }, JSON.stringify({ inputs: { images: [image(2)] } })],
  ['TF versioned', '/v1/models/mnist/versions/7:predict', json, JSON.stringify({ instances: [image(3)] })],
  ['TF version not loaded', '/v1/models/mnist/versions/6:predict', json, JSON.stringify({ instances: [image(3)] })],
  ['TF unknown model', '/v1/models/cifar:predict', json, JSON.stringify({ instances: [image(3)] })],
  ['TF encoded name', '/v1/models/mn%69st:predict', json, JSON.stringify({ instances: [image(3)] })],
  ['TF out of range', '/v1/models/mnist:predict', json, JSON.stringify({ instances: [image(0).map((v, i) => (i === 9 ? 3 : v))] })],
  ['TF not JSON', '/v1/models/mnist:predict', json, '{"instances": [[0,'],
  ['TF text/plain', '/v1/models/mnist:predict', { ...auth, 'content-type': 'text/plain' }, '{}'],
  ['TF too many images', '/v1/models/mnist:predict', json, JSON.stringify({ instances: [0, 1, 2, 3, 4].map(image) })],
  ['TF body over the limit', '/v1/models/mnist:predict', json, JSON.stringify({ instances: [image(0)], pad: 'x'.repeat(70 * 1024) })],
  ['TF no key', '/v1/models/mnist:predict', { 'content-type': 'application/json' }, JSON.stringify({ instances: [image(0)] })],
  ['TF wrong key', '/v1/models/mnist:predict', { 'content-type': 'application/json', 'x-api-key': 'x'.repeat(40) }, JSON.stringify({ instances: [image(0)] })],
  ['V2 JSON', '/v2/models/mnist/infer', json, JSON.stringify({ id: 'r1', inputs: [{ name: 'images', shape: [1, PIXELS], datatype: 'FP32', data: image(4) }] })],
  ['V2 versioned', '/v2/models/mnist/versions/7/infer', json, JSON.stringify({ inputs: [{ name: 'images', shape: [1, PIXELS], datatype: 'FP32', data: image(4) }] })],
  ['V2 bad datatype', '/v2/models/mnist/infer', json, JSON.stringify({ inputs: [{ name: 'images', shape: [1, PIXELS], datatype: 'INT8', data: image(4) }] })],
  ['V2 binary in, JSON out', '/v2/models/mnist/infer', binaryInfer(false).headers, binaryInfer(false).body],
  ['V2 binary in and out', '/v2/models/mnist/infer', binaryInfer(true).headers, binaryInfer(true).body],
];

/** What a client sees of a response, less what differs by nature between two servers (date, connection, a new request id). */
async function seen(base: string, path: string, headers: Record<string, string>, body: string | Buffer) {
  const res = await fetch(base + path, { method: 'POST', headers, body });
  const h = Object.fromEntries([...res.headers].filter(([k]) => !['date', 'connection', 'keep-alive'].includes(k)));
  if (!headers['x-request-id']) {
    expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    delete h['x-request-id'];
  }
  return { status: res.status, headers: h, body: Buffer.from(await res.arrayBuffer()).toString('base64') };
}

describe('the direct prediction routes', () => {
  it('answer every request with the status, headers and body Express gives', async () => {
    const statuses = new Set<number>();
    for (const [name, path, headers, body] of requests) {
      const a = await seen(direct, path, headers, body);
      const b = await seen(express, path, headers, body);
      expect(a, name).toEqual(b);
      statuses.add(a.status);
    }
    expect([...statuses].sort()).toEqual([200, 400, 401, 404, 413, 415]);
  });

  it('leave every other request to Express', async () => {
    const answered: string[] = [];
    const route: DirectRoute = { pattern: /^\/p\/([^/]+)$/, label: '/p/:name', reply: async () => ({ headers: {}, body: { json: {} } }), render: (e) => e };
    const handler = directPredict([route], { log, metrics: createMetrics('t'), trim: new IdleTrim(() => {}), headers: {} });
    const fallthrough = (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (handler(req, res)) return;
      answered.push(`${req.method} ${req.url}`);
      res.end();
    };
    const server = await servers.listen(fallthrough);
    for (const [method, path] of [['GET', '/p/a'], ['POST', '/p/a/'], ['POST', '/P/a'], ['POST', '/p/%E0%A4%A'], ['POST', '/p/a/b'], ['POST', '/p/a?x=1']]) {
      await (await fetch(server.url + path, { method })).arrayBuffer();
    }
    expect(answered).toEqual(['GET /p/a', 'POST /p/a/', 'POST /P/a', 'POST /p/%E0%A4%A', 'POST /p/a/b']);
  });

  it('count each request under its route, and render errors in the route\'s protocol', async () => {
    const metrics = createMetrics('direct');
    const route: DirectRoute = {
      pattern: /^\/p\/([^/]+)$/,
      label: '/p/:name',
      reply: async (_req, _res, ref) => {
        if (ref.name === 'bad') throw new InvalidInput('nope', 'refused');
        if (ref.name === 'bug') throw new Error('a bug');
        return { headers: { 'X-Model-Version': '3' }, body: { json: { name: ref.name } } };
      },
      render: (e) => ({ problem: e.code }),
    };
    const handler = directPredict([route], { log, metrics, trim: new IdleTrim(() => {}), headers: { 'X-Frame-Options': 'DENY' } });
    const server = await servers.listen((req, res) => void handler(req, res));
    const ok = await fetch(`${server.url}/p/caf%C3%A9`, { method: 'POST' });
    expect([ok.status, ok.headers.get('x-model-version'), ok.headers.get('x-frame-options'), await ok.json()]).toEqual([200, '3', 'DENY', { name: 'café' }]);
    const bad = await fetch(`${server.url}/p/bad`, { method: 'POST' });
    expect([bad.status, await bad.json()]).toEqual([400, { problem: 'nope' }]);
    const bug = await fetch(`${server.url}/p/bug`, { method: 'POST' });
    expect([bug.status, await bug.json()]).toEqual([500, { problem: 'internal' }]);
    const counted = (await metrics.httpRequests.get()).values.map((v) => `${v.labels.route} ${v.labels.status} ${v.value}`).sort();
    expect(counted).toEqual(['/p/:name 200 1', '/p/:name 400 1', '/p/:name 500 1']);
  });
});

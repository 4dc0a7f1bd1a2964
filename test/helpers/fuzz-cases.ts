import type { Rng } from '../../datasets/rng.js';

/**
 * Generators of hostile requests for the fuzz suite: random and mutated JSON, CloudEvents with
 * broken attributes, images whose headers lie about their size, multipart bodies cut short. One
 * family per app; each case is drawn from a seeded Rng, so a failure replays.
 */
export interface FuzzRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  truncate?: boolean;
}
export type Case = () => FuzzRequest;

// ---- generators ---------------------------------------------------------------

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const WEIRD_NUMBERS = [0, -1, 1, 1e308, -1e308, 2 ** 53 + 1, 1e-320, 0.5, 255, 256, 28, 784, 4096, 1e9, -0];
const WEIRD_STRINGS = ['', 'a', 'mnist', '../../etc/passwd', '\u0000', 'x'.repeat(5000), '💥', '{"a":1}', 'null', '2020-01-01T00:00:00Z', 'run-1', 'dev.edgefl.round.train'];

function randomJson(rng: Rng, depth = 0): unknown {
  switch (int(rng, depth > 4 ? 4 : 8)) {
    case 0:
      return pick(rng, WEIRD_NUMBERS);
    case 1:
      return pick(rng, WEIRD_STRINGS);
    case 2:
      return pick(rng, [true, false, null]);
    case 3:
      return rng() * 2 - 1;
    case 4:
    case 5:
      return Array.from({ length: int(rng, 5) }, () => randomJson(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = int(rng, 5); i > 0; i--) o[pick(rng, KEYS)] = randomJson(rng, depth + 1);
      return o;
    }
  }
}
const KEYS = ['runId', 'round', 'modelVersion', 'epochs', 'batchSize', 'learningRate', 'optimizer', 'deadline', 'seed', 'instances', 'inputs', 'shape', 'data', 'datatype', 'name', 'rounds', 'nodes', 'strategy', 'minQuorum', 'maxUpdateNorm', 'targetAccuracy', '__proto__', 'constructor'];

function deepNest(rng: Rng): string {
  const n = 100 + int(rng, 5000);
  return rng() < 0.5 ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n);
}

function mutate(rng: Rng, text: string): string {
  const chars = text.split('');
  for (let i = 1 + int(rng, 4); i > 0; i--) {
    const at = int(rng, chars.length + 1);
    switch (int(rng, 4)) {
      case 0:
        chars.splice(at, 1);
        break;
      case 1:
        chars.splice(at, 0, pick(rng, ['{', '}', '[', ']', '"', ',', ':', '9', '-', 'e', '\\', '\u0000']));
        break;
      case 2:
        chars.splice(at, int(rng, 20));
        break;
      default:
        chars.splice(at, 0, String(pick(rng, WEIRD_NUMBERS)));
    }
  }
  return chars.join('');
}

function image(rng: Rng): number[] {
  return Array.from({ length: pick(rng, [784, 784, 783, 785, 28, 0]) }, () => pick(rng, [0, 0.5, 1, 255, -1, 1e308, 0.1]));
}

/** A body for a JSON route: valid-ish, random, mutated, nested, or not JSON at all. */
function jsonBody(rng: Rng, valid: () => unknown): { body: Buffer | string; type: string } {
  const type = pick(rng, ['application/json', 'application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'application/cloudevents+json', '']);
  switch (int(rng, 6)) {
    case 0:
      return { body: JSON.stringify(valid()), type };
    case 1:
      return { body: mutate(rng, JSON.stringify(valid())), type };
    case 2:
      return { body: JSON.stringify(randomJson(rng)), type };
    case 3:
      return { body: deepNest(rng), type };
    case 4:
      return { body: Buffer.from(Array.from({ length: int(rng, 300) }, () => int(rng, 256))), type };
    default:
      return { body: JSON.stringify({ ...(valid() as object), ...(randomJson(rng, 3) as object) }), type };
  }
}

// ---- families --------------------------------------------------------------------

const trainEvent = (rng: Rng) => ({
  runId: pick(rng, ['run-1', 'r', 'bad id!', '']),
  round: pick(rng, [1, 2, 0, -1, 1.5, 1e9]),
  modelVersion: pick(rng, [1, 2, 99, 0]),
  epochs: pick(rng, [1, 0, 1000]),
  batchSize: pick(rng, [1, 32, 1e9]),
  learningRate: pick(rng, [0.001, -1, 1e308]),
  deadline: pick(rng, [new Date(Date.now() - 60_000).toISOString(), Date.now() - 1, 'yesterday', new Date(Date.now() + 60_000).toISOString()]),
});

const CE_HEADERS = (rng: Rng): Record<string, string> => {
  const h: Record<string, string> = {
    'ce-specversion': pick(rng, ['1.0', '0.3', '2.0', '']),
    'ce-type': pick(rng, ['dev.edgefl.round.train', 'dev.edgefl.update.ready', 'x', '']),
    'ce-source': pick(rng, ['/edgefl/aggregator', '', '::::']),
    'ce-id': pick(rng, ['1', '', 'x'.repeat(300)]),
  };
  for (const k of Object.keys(h)) if (rng() < 0.2) delete h[k];
  if (rng() < 0.2) h['ce-time'] = pick(rng, ['not a time', '2020-13-45T99:99:99Z']);
  return h;
};

export function trainerCase(rng: Rng): Case {
  return (): FuzzRequest => {
    const mode = int(rng, 4);
    const { body, type } = jsonBody(rng, () => trainEvent(rng));
    if (mode === 0) return { method: 'POST', path: '/', headers: { 'content-type': type, ...CE_HEADERS(rng) }, body };
    if (mode === 1) {
      const structured = { specversion: pick(rng, ['1.0', '9']), type: pick(rng, ['dev.edgefl.round.train', 'nope']), source: '/x', id: String(int(rng, 1e6)), data: rng() < 0.5 ? trainEvent(rng) : randomJson(rng), ...(rng() < 0.2 ? { data_base64: pick(rng, ['!!!', 'e30=']) } : {}) };
      return { method: 'POST', path: '/', headers: { 'content-type': 'application/cloudevents+json' }, body: rng() < 0.7 ? JSON.stringify(structured) : mutate(rng, JSON.stringify(structured)) };
    }
    if (mode === 2) return { method: 'POST', path: '/', headers: { 'content-type': type, authorization: pick(rng, ['Bearer v1.node-0.1.x', 'Basic abc', '']) }, body, truncate: rng() < 0.1 };
    return { method: pick(rng, ['GET', 'PUT', 'DELETE', 'PATCH']), path: pick(rng, ['/', '/healthz', '/readyz', '/metrics', '/nope', '/%ZZ', '//']) };
  };
}

function pngWithSize(w: number, h: number): Buffer {
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  const ihdr = Buffer.alloc(25);
  ihdr.writeUInt32BE(13, 0);
  ihdr.write('IHDR', 4, 'latin1');
  ihdr.writeUInt32BE(w, 8);
  ihdr.writeUInt32BE(h, 12);
  ihdr.writeUInt8(8, 16);
  ihdr.writeUInt8(0, 17);
  return Buffer.concat([sig, ihdr, Buffer.from('0000000049454e44ae426082', 'hex')]);
}
function jpegWithSize(w: number, h: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0, 11, 8, h >> 8, h & 255, w >> 8, w & 255, 1, 1, 0x11, 0]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), sof, Buffer.from([0xff, 0xd9])]);
}

function multipart(rng: Rng): { body: Buffer; type: string; truncate: boolean } {
  const boundary = 'fuzzb' + int(rng, 1e6);
  const file = pick(rng, [
    () => pngWithSize(pick(rng, [100_000, 65_535, 4097, 28, 0]), pick(rng, [100_000, 1, 28, 0])),
    () => jpegWithSize(pick(rng, [65_535, 28, 0]), pick(rng, [65_535, 28, 0])),
    () => Buffer.from(Array.from({ length: int(rng, 200) }, () => int(rng, 256))),
    () => Buffer.alloc(0),
  ])();
  const parts = Array.from({ length: 1 + int(rng, 3) }, () =>
    Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${pick(rng, ['image', 'file', 'x'])}"; filename="a.${pick(rng, ['png', 'jpg', 'txt'])}"\r\nContent-Type: ${pick(rng, ['image/png', 'image/jpeg', 'text/plain'])}\r\n\r\n`), file, Buffer.from('\r\n')]),
  );
  let body = Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
  // Complete bodies that end before the closing boundary (busboy's 'Unexpected end of form').
  if (rng() < 0.4) body = body.subarray(0, int(rng, body.length));
  const type = rng() < 0.85 ? `multipart/form-data; boundary=${boundary}` : pick(rng, ['multipart/form-data', 'image/png', 'application/json']);
  return { body, type, truncate: rng() < 0.1 };
}

export function servingCase(rng: Rng): Case {
  return (): FuzzRequest => {
    const mode = int(rng, 5);
    if (mode === 0) {
      const { body, type } = jsonBody(rng, () => ({ [pick(rng, ['instances', 'inputs'])]: Array.from({ length: int(rng, 3) }, () => (rng() < 0.3 ? { images: image(rng) } : image(rng))) }));
      return { method: 'POST', path: `/v1/models/${pick(rng, ['mnist', 'other', '%2e%2e', 'mnist/versions/1', 'mnist/versions/%00'])}:predict`, headers: { 'content-type': type }, body };
    }
    if (mode === 1) {
      const { body, type } = jsonBody(rng, () => ({ inputs: [{ name: 'images', shape: pick(rng, [[1, 784], [1, 28, 28, 1], [1e9, 784], [-1, 784], [2]]), datatype: pick(rng, ['FP32', 'INT8', 'BYTES', 'FP64']), data: image(rng) }] }));
      return { method: 'POST', path: `/v2/models/${pick(rng, ['mnist', 'x', 'mnist/versions/1', 'mnist/versions/9'])}/infer`, headers: { 'content-type': type }, body };
    }
    if (mode === 2) {
      const m = multipart(rng);
      return { method: 'POST', path: `/v1/models/mnist:classify${pick(rng, ['', '?invert=maybe', '?preprocess=resize', '?invert=auto&preprocess=x'])}`, headers: { 'content-type': m.type }, body: m.body, truncate: m.truncate };
    }
    if (mode === 3) {
      const { body, type } = jsonBody(rng, () => ({}));
      return { method: 'POST', path: pick(rng, ['/v1/models/mnist:predict', '/v2/models/mnist/infer']), headers: { 'content-type': type }, body, truncate: true };
    }
    return { method: pick(rng, ['GET', 'OPTIONS', 'DELETE']), path: pick(rng, ['/healthz', '/readyz', '/v2', '/v2/health/live', '/v2/health/ready', '/v1/models/mnist', '/v1/models/mnist/metadata', '/v2/models/mnist', '/v2/models/mnist/ready', '/v2/models/mnist/versions/1/ready', '/v1/models/mnist/versions/2', '/v1/models/%ff', '/metrics', '/nope']) };
  };
}

export function aggregatorCase(rng: Rng): Case {
  return (): FuzzRequest => {
    const mode = int(rng, 3);
    const auth: Record<string, string> = rng() < 0.8 ? { authorization: 'Bearer fuzz-admin' } : pick<Record<string, string>>(rng, [{}, { authorization: 'Bearer nope' }, { authorization: 'Bearer ' + 'x'.repeat(3000) }]);
    if (mode === 0) {
      const { body, type } = jsonBody(rng, () => ({ rounds: pick(rng, [1, 0, 1e9, 2.5]), strategy: pick(rng, ['fedavg', 'median', 'nope']), nodes: pick(rng, [null, ['node-0'], [1], 'x']), minQuorum: pick(rng, [1, 0, 99]), maxUpdateNorm: pick(rng, [null, 1, -1]), targetAccuracy: pick(rng, [0.5, 2]) }));
      return { method: 'POST', path: '/runs', headers: { 'content-type': type, ...auth }, body, truncate: rng() < 0.05 };
    }
    if (mode === 1) return { method: 'POST', path: `/runs/${pick(rng, ['run-1', 'x'.repeat(500), '%00', "'; DROP TABLE runs;--"])}/stop`, headers: auth };
    return {
      method: pick(rng, ['GET', 'GET', 'DELETE']),
      path: pick(rng, ['/runs', '/runs/nope', `/runs/${encodeURIComponent(pick(rng, WEIRD_STRINGS))}`, '/models', '/models/1', '/models/1?format=bin', '/models/1?format=xml', `/models/${pick(rng, WEIRD_NUMBERS)}`, '/models/1e3', '/models/-1', '/models/1?format[]=bin', '/nodes', '/healthz', '/readyz', '/metrics', '/nope']),
    };
  };
}

import { describe, expect, it } from 'vitest';
import { INPUT_SHAPE, NUM_CLASSES, PIXELS } from '../services/core/model.js';
import { postJson, useLiveServing } from './helpers/live-serving.js';

/**
 * The Open Inference Protocol REST API (kserve/open-inference-protocol,
 * specification/protocol/inference_rest.md and open_inference_rest.yaml), section by
 * section, against a live serving function (a spawned `edgefl serve`).
 */
const s = useLiveServing();

const digit = (k: number) => Array.from({ length: PIXELS }, (_, i) => ((i * 7 + k * 13) % 11) / 10);
const input = (data: unknown, shape: number[] = [1, PIXELS], datatype = 'FP32') => ({ name: 'images', shape, datatype, data });
const infer = (body: unknown, version?: string) => postJson(`${s.url}/v2/models/mnist${version ? `/versions/${version}` : ''}/infer`, body);

/** The spec's error object: an HTTP error status and exactly {"error": $string}. */
async function expectError(res: Response, status: number, message?: RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error).toBe('string');
  if (message) expect(body.error).toMatch(message);
}

interface InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: { name: string; shape: number[]; datatype: string; data: number[] }[];
}

describe('health', () => {
  it('server live: GET v2/health/live answers 200 {"live": true}', async () => {
    const res = await fetch(`${s.url}/v2/health/live`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ live: true });
  });

  it('server ready: GET v2/health/ready answers 200, naming the served version and whether it is a canary', async () => {
    const res = await fetch(`${s.url}/v2/health/ready`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, model_version: s.version, canary: false });
  });

  it('model ready: unversioned and versioned answer {"name", "ready": true}', async () => {
    expect(await (await fetch(`${s.url}/v2/models/mnist/ready`)).json()).toEqual({ name: 'mnist', ready: true });
    const versioned = await fetch(`${s.url}/v2/models/mnist/versions/${s.version}/ready`);
    expect(versioned.status).toBe(200);
    expect(await versioned.json()).toEqual({ name: 'mnist', version: s.version, ready: true });
  });

  it('model ready: a version that is not loaded, or an unknown model, is an error object', async () => {
    await expectError(await fetch(`${s.url}/v2/models/mnist/versions/${Number(s.version) + 1}/ready`), 404, /not loaded/);
    await expectError(await fetch(`${s.url}/v2/models/resnet/ready`), 404, /not served/);
  });
});

describe('server metadata', () => {
  it('GET v2 answers {"name", "version", "extensions"}: the binary tensor data extension is listed', async () => {
    const body = (await (await fetch(`${s.url}/v2`)).json()) as Record<string, unknown>;
    expect(typeof body.name).toBe('string');
    expect(typeof body.version).toBe('string');
    expect(body.extensions).toEqual(['binary_tensor_data']);
  });
});

describe('model metadata', () => {
  const expected = () => ({
    name: 'mnist',
    versions: [s.version],
    platform: 'tensorflowjs',
    inputs: [{ name: 'images', datatype: 'FP32', shape: [-1, ...INPUT_SHAPE] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [-1, NUM_CLASSES] },
      { name: 'class', datatype: 'INT64', shape: [-1] },
    ],
  });

  it('unversioned and versioned metadata list the version that may be requested', async () => {
    expect(await (await fetch(`${s.url}/v2/models/mnist`)).json()).toEqual(expected());
    expect(await (await fetch(`${s.url}/v2/models/mnist/versions/${s.version}`)).json()).toEqual(expected());
  });

  it('a version not loaded, or an unknown model, is an error object', async () => {
    await expectError(await fetch(`${s.url}/v2/models/mnist/versions/999999`), 404, /version '999999'.*not loaded/);
    await expectError(await fetch(`${s.url}/v2/models/resnet`), 404);
  });
});

describe('inference: unversioned and versioned', () => {
  it('POST .../infer and .../versions/{s.version}/infer answer the same, naming model and version', async () => {
    const body = { inputs: [input(digit(1))] };
    const a = (await (await infer(body)).json()) as InferResponse;
    const res = await infer(body, s.version);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-model-version')).toBe(s.version);
    const b = (await res.json()) as InferResponse;
    expect(b.model_name).toBe('mnist');
    expect(b.model_version).toBe(s.version);
    expect(b.outputs).toEqual(a.outputs);
  });

  it('a version that is not loaded is the protocol error, not a 404 page', async () => {
    await expectError(await infer({ inputs: [input(digit(1))] }, String(Number(s.version) + 1)), 404, /not loaded/);
    await expectError(await infer({ inputs: [input(digit(1))] }, 'latest'), 404, /not loaded/);
  });
});

describe('inference request and response objects', () => {
  it('"id" is returned when given, and absent when not', async () => {
    const withId = (await (await infer({ id: 'req-42', inputs: [input(digit(2))] })).json()) as InferResponse;
    expect(withId.id).toBe('req-42');
    const without = (await (await infer({ inputs: [input(digit(2))] })).json()) as InferResponse;
    expect('id' in without).toBe(false);
    await expectError(await infer({ id: 42, inputs: [input(digit(2))] }), 400, /id/);
  });

  it('"parameters" is accepted on the request and on inputs; "parameters" must be an object', async () => {
    const res = await infer({ parameters: { priority: 1 }, inputs: [{ ...input(digit(2)), parameters: { note: 'x' } }] });
    expect(res.status).toBe(200);
    await expectError(await infer({ parameters: 'fast', inputs: [input(digit(2))] }), 400, /parameters/);
  });

  it('without "outputs" every output is returned, in the model\'s order, with name, shape, datatype and data', async () => {
    const body = (await (await infer({ inputs: [input([...digit(1), ...digit(2), ...digit(3)], [3, PIXELS])] })).json()) as InferResponse;
    expect(body.outputs.map((o) => o.name)).toEqual(['probabilities', 'class']);
    const [probs, cls] = body.outputs;
    expect(probs).toMatchObject({ shape: [3, NUM_CLASSES], datatype: 'FP32' });
    expect(probs!.data).toHaveLength(3 * NUM_CLASSES);
    expect(cls).toMatchObject({ shape: [3], datatype: 'INT64' });
    for (let r = 0; r < 3; r++) {
      const row = probs!.data.slice(r * NUM_CLASSES, (r + 1) * NUM_CLASSES);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
      expect(cls!.data[r]).toBe(row.indexOf(Math.max(...row)));
    }
  });

  it('requested "outputs" are the only ones returned, in the order requested', async () => {
    const data = [input(digit(4))];
    const all = (await (await infer({ inputs: data })).json()) as InferResponse;
    const onlyClass = (await (await infer({ inputs: data, outputs: [{ name: 'class' }] })).json()) as InferResponse;
    expect(onlyClass.outputs).toEqual([all.outputs[1]]);
    const reversed = (await (await infer({ inputs: data, outputs: [{ name: 'class' }, { name: 'probabilities' }] })).json()) as InferResponse;
    expect(reversed.outputs).toEqual([all.outputs[1], all.outputs[0]]);
  });

  it('an output the model does not have, or one requested twice, is a 400', async () => {
    await expectError(await infer({ inputs: [input(digit(4))], outputs: [{ name: 'logits' }] }), 400, /logits/);
    await expectError(await infer({ inputs: [input(digit(4))], outputs: [{ name: 'class' }, { name: 'class' }] }), 400, /twice/);
    await expectError(await infer({ inputs: [input(digit(4))], outputs: [{}] }), 400);
  });

  it('binary data parameters that cannot be honoured are a 400 (the extension itself: oip-binary.test.ts)', async () => {
    // binary_data_size on a plain JSON request: nothing says where the JSON ends.
    await expectError(await infer({ inputs: [{ ...input([]), parameters: { binary_data_size: 3136 } }] }), 400, /Inference-Header-Content-Length/);
    await expectError(await infer({ parameters: { binary_data_output: 'yes' }, inputs: [input(digit(4))] }), 400, /binary_data_output/);
    // binary_data: false asks for JSON, which is what is sent
    expect((await infer({ inputs: [input(digit(4))], outputs: [{ name: 'class', parameters: { binary_data: false } }] })).status).toBe(200);
  });

  it('inputs: exactly the model\'s one input, by its name', async () => {
    await expectError(await infer({ inputs: [] }), 400);
    await expectError(await infer({ inputs: [input(digit(1)), input(digit(2))] }), 400, /one input/);
    await expectError(await infer({ inputs: [{ ...input(digit(1)), name: 'pixels' }] }), 400, /'pixels'/);
    await expectError(await infer({ outputs: [{ name: 'class' }] }), 400, /inputs/);
  });
});

describe('tensor data: flat and nested, row-major', () => {
  const images = [digit(5), digit(6)];
  const rowsOf = (img: number[]) => Array.from({ length: INPUT_SHAPE[0] }, (_, r) => img.slice(r * INPUT_SHAPE[1], (r + 1) * INPUT_SHAPE[1]));
  const classes = async (body: unknown) => ((await (await infer(body)).json()) as InferResponse).outputs[1]!.data;

  it('the same two images, flat or nested, in each accepted shape, get the same classes', async () => {
    const want = await classes({ inputs: [input(images.flat(), [2, PIXELS])] });
    expect(want).toHaveLength(2);
    expect(await classes({ inputs: [input(images, [2, PIXELS])] })).toEqual(want);
    expect(await classes({ inputs: [input(images.flat(), [2, ...INPUT_SHAPE.slice(0, 2)])] })).toEqual(want);
    expect(await classes({ inputs: [input(images.map(rowsOf), [2, ...INPUT_SHAPE.slice(0, 2)])] })).toEqual(want);
    expect(await classes({ inputs: [input(images.map((i) => rowsOf(i).map((row) => row.map((x) => [x]))), [2, ...INPUT_SHAPE])] })).toEqual(want);
  });

  it('data that does not match its shape is a 400 naming the shape', async () => {
    await expectError(await infer({ inputs: [input(images.flat(), [3, PIXELS])] }), 400, /shape/);
    await expectError(await infer({ inputs: [input(images.map(rowsOf), [2, PIXELS])] }), 400);
    await expectError(await infer({ inputs: [input(images.flat(), [2, 2, PIXELS / 2])] }), 400, /shape/);
  });
});

describe('tensor data types: every datatype the specification lists', () => {
  const img = digit(7);
  const encodings: Record<string, unknown[]> = {
    FP32: img,
    FP64: img,
    FP16: img,
    UINT8: img.map((x) => Math.round(x * 255)),
  };
  const refused = ['BOOL', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'BYTES'];

  for (const [datatype, data] of Object.entries(encodings)) {
    it(`${datatype} is supported`, async () => {
      const res = await infer({ inputs: [input(data, [1, PIXELS], datatype)] });
      expect(res.status).toBe(200);
      expect(((await res.json()) as InferResponse).outputs[1]!.data).toHaveLength(1);
    });
  }
  for (const datatype of refused) {
    it(`${datatype} is refused with a 400 naming the supported types`, async () => {
      const data = datatype === 'BYTES' ? img.map(String) : datatype === 'BOOL' ? img.map((x) => x > 0.5) : img.map((x) => Math.round(x * 100));
      await expectError(await infer({ inputs: [input(data, [1, PIXELS], datatype)] }), 400, /FP32, FP64, FP16, UINT8/);
    });
  }
  it('a datatype the specification does not list is a 400', async () => {
    await expectError(await infer({ inputs: [input(img, [1, PIXELS], 'FLOAT32')] }), 400, /not an Open Inference Protocol datatype/);
  });
  it('values outside a datatype\'s range are a 400', async () => {
    await expectError(await infer({ inputs: [input(img.map((x, i) => (i === 3 ? 256 : 0)), [1, PIXELS], 'UINT8')] }), 400, /0\.\.255/);
    await expectError(await infer({ inputs: [input(img.map((x, i) => (i === 3 ? 2 : x)), [1, PIXELS], 'FP32')] }), 400, /\[0,1\]/);
  });
});

describe('error objects', () => {
  it('malformed bodies, unknown models and routes all answer {"error": $string}', async () => {
    await expectError(await infer('{"inputs": ['), 400, /JSON/);
    await expectError(await infer([1, 2]), 400);
    await expectError(await postJson(`${s.url}/v2/models/resnet/infer`, { inputs: [input(digit(1))] }), 404);
    await expectError(await fetch(`${s.url}/v2/models/mnist/versions/${s.version}/explain`), 404);
    const wrongType = await fetch(`${s.url}/v2/models/mnist/infer`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    await expectError(wrongType, 415);
  });

  it('a batch over the limit is a 413 before any data is read', async () => {
    await expectError(await infer({ inputs: [input([], [1_000_000_000, PIXELS])] }), 413, /limit/);
  });
});

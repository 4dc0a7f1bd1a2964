import { describe, expect, it } from 'vitest';
import { PIXELS } from '../services/core/model.js';
import { halfToNumber } from '../services/serving/binary-tensor.js';
import { postJson, useLiveServing } from './helpers/live-serving.js';

/**
 * The Open Inference Protocol's binary tensor data extension (KServe / Triton
 * "binary_tensor_data") against a live serving function: the same images sent as binary
 * UINT8, FP32 or FP16 get the same answer as JSON, outputs come back as binary when asked,
 * and every malformed binary request is a 400/413/415 with {"error": string}.
 */
const s = useLiveServing();
const url = () => `${s.url}/v2/models/mnist/infer`;

/** Three digit-like images as 0..255 bytes. */
const bytes = Uint8Array.from({ length: 3 * PIXELS }, (_, i) => ((i * 37 + Math.floor(i / PIXELS) * 91) % 256));
const jsonInput = { name: 'images', shape: [3, PIXELS], datatype: 'UINT8', data: Array.from(bytes) };

/** A request in the extension's form: JSON header, then the binary data. */
function postBinary(header: unknown, data: Uint8Array, extra: Record<string, string> = {}, headerLength?: string) {
  const json = Buffer.from(JSON.stringify(header));
  return fetch(url(), {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': headerLength ?? String(json.length), ...extra },
    body: Buffer.concat([json, data]),
  });
}
const binaryInput = (datatype: string, size: number, shape = [3, PIXELS]) => ({ name: 'images', shape, datatype, parameters: { binary_data_size: size } });

interface Output {
  name: string;
  shape: number[];
  datatype: string;
  data?: number[];
  parameters?: { binary_data_size?: number };
}
type InferResponse = { model_name: string; outputs: Output[] };

async function expectError(res: Response, status: number, message: RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error).toMatch(message);
}

const jsonAnswer = async () => (await (await postJson(url(), { inputs: [jsonInput] })).json()) as InferResponse;

/** Float32 bits of v rounded to half precision, as IEEE half bits (values in [0,1] only). */
function toHalf(v: number): number {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(v));
  const exponent = e + 15;
  if (exponent <= 0) return Math.round(v / 2 ** -24);
  return (exponent << 10) | Math.round((v / 2 ** e - 1) * 1024);
}

describe('binary tensor data extension: requests', () => {
  it('UINT8, FP32 and FP16 binary data get the answer the same images get as JSON', async () => {
    const want = await jsonAnswer();
    const u8 = (await (await postBinary({ inputs: [binaryInput('UINT8', bytes.length)] }, bytes)).json()) as InferResponse;
    expect(u8.outputs).toEqual(want.outputs);

    const f32 = new Float32Array(bytes.length).map((_, i) => bytes[i]! / 255);
    const fp32 = (await (await postBinary({ inputs: [binaryInput('FP32', f32.byteLength)] }, new Uint8Array(f32.buffer))).json()) as InferResponse;
    expect(fp32.outputs[1]!.data).toEqual(want.outputs[1]!.data);
    fp32.outputs[0]!.data!.forEach((p, i) => expect(p).toBeCloseTo(want.outputs[0]!.data![i]!, 6));

    // FP16 has no JSON form worth the name; its values, rounded to half, must read as those halves.
    const halves = Uint16Array.from(f32, toHalf);
    const asFp32 = Array.from(halves, halfToNumber);
    const viaJson = (await (await postJson(url(), { inputs: [{ name: 'images', shape: [3, PIXELS], datatype: 'FP32', data: asFp32 }] })).json()) as InferResponse;
    const fp16 = (await (await postBinary({ inputs: [binaryInput('FP16', halves.byteLength)] }, new Uint8Array(halves.buffer))).json()) as InferResponse;
    expect(fp16.outputs).toEqual(viaJson.outputs);
  });

  it('halfToNumber reads IEEE half precision, subnormals and specials included', () => {
    expect([0x0000, 0x3c00, 0x3800, 0x3555, 0x0001, 0x7c00, 0xfc00].map(halfToNumber)).toEqual([0, 1, 0.5, 0.333251953125, 2 ** -24, Infinity, -Infinity]);
    expect(halfToNumber(0x7e00)).toBeNaN();
  });
});

describe('binary tensor data extension: responses', () => {
  it('binary_data_output sends every output as binary data after the JSON header; the bytes decode to the JSON answer', async () => {
    const want = await jsonAnswer();
    const res = await postBinary({ parameters: { binary_data_output: true }, inputs: [binaryInput('UINT8', bytes.length)] }, bytes);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/octet-stream/);
    const body = Buffer.from(await res.arrayBuffer());
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const header = JSON.parse(body.subarray(0, headerLength).toString()) as InferResponse;
    const [probs, classes] = header.outputs;
    expect(probs).toMatchObject({ name: 'probabilities', datatype: 'FP32', shape: [3, 10], parameters: { binary_data_size: 3 * 10 * 4 } });
    expect(classes).toMatchObject({ name: 'class', datatype: 'INT64', shape: [3], parameters: { binary_data_size: 3 * 8 } });
    expect(body.length).toBe(headerLength + 120 + 24);
    const data = body.subarray(headerLength);
    const decodedProbs = Array.from({ length: 30 }, (_, i) => data.readFloatLE(i * 4));
    decodedProbs.forEach((p, i) => expect(p).toBeCloseTo(want.outputs[0]!.data![i]!, 6));
    expect(Array.from({ length: 3 }, (_, i) => Number(data.readBigInt64LE(120 + i * 8)))).toEqual(want.outputs[1]!.data);
  });

  it('an output\'s binary_data picks that output alone; a JSON request may ask for binary outputs too', async () => {
    const res = await postJson(url(), { inputs: [jsonInput], outputs: [{ name: 'class', parameters: { binary_data: true } }, { name: 'probabilities' }] });
    const body = Buffer.from(await res.arrayBuffer());
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const header = JSON.parse(body.subarray(0, headerLength).toString()) as InferResponse;
    expect(header.outputs[0]).toMatchObject({ name: 'class', parameters: { binary_data_size: 24 } });
    expect(header.outputs[0]!.data).toBeUndefined();
    expect(header.outputs[1]!.data).toHaveLength(30);
    expect(body.length).toBe(headerLength + 24);
  });
});

describe('binary tensor data extension: bad requests', () => {
  const one = bytes.subarray(0, PIXELS);
  const oneInput = binaryInput('UINT8', PIXELS, [1, PIXELS]);

  it('a header length that is not a byte count within the body is a 400', async () => {
    await expectError(await postBinary({ inputs: [oneInput] }, one, {}, '99999999'), 400, /Inference-Header-Content-Length is 99999999 bytes but the body has only/);
    await expectError(await postBinary({ inputs: [oneInput] }, one, {}, 'ten'), 400, /must be a byte count/);
    await expectError(await postBinary({ inputs: [oneInput] }, one, {}, '0'), 400, /is 0/);
    // A header length that cuts the JSON short: the header is not valid JSON.
    await expectError(await postBinary({ inputs: [oneInput] }, one, {}, '10'), 400, /first 10 bytes .* not a valid JSON inference request/);
  });

  it('binary data that does not match what the inputs declare, or the shape, is a 400, never a misread', async () => {
    await expectError(await postBinary({ inputs: [oneInput] }, one.subarray(1)), 400, /declare 784 bytes .* carries 783/);
    await expectError(await postBinary({ inputs: [binaryInput('UINT8', PIXELS)] }, one), 400, /needs 2352/);
    await expectError(await postBinary({ inputs: [{ name: 'images', shape: [1, PIXELS], datatype: 'UINT8', data: Array.from(one) }] }, one), 400, /declare 0 bytes/);
    await expectError(await postBinary({ inputs: [{ ...oneInput, data: Array.from(one) }] }, one), 400, /must not also carry JSON data/);
    await expectError(await postBinary({ inputs: [{ ...oneInput, parameters: { binary_data_size: -1 } }] }, one), 400, /non-negative integer/);
    await expectError(await postBinary({ inputs: [{ ...oneInput, datatype: 'INT32' }] }, one), 400, /INT32 is not supported/);
  });

  it('FP32 data outside [0,1] or not finite is refused, as in JSON', async () => {
    for (const [v, msg] of [[2, /element 5 is 2/], [NaN, /element 5 is NaN/], [-Infinity, /element 5 is -Infinity/]] as const) {
      const f = new Float32Array(PIXELS);
      f[5] = v;
      await expectError(await postBinary({ inputs: [binaryInput('FP32', f.byteLength, [1, PIXELS])] }, new Uint8Array(f.buffer)), 400, msg);
    }
  });

  it('limits hold: too many images is a 413 before decoding, a body over the limit a 413, another media type a 415; the server stays up', async () => {
    await expectError(await postBinary({ inputs: [binaryInput('UINT8', 100_000 * PIXELS, [100_000, PIXELS])] }, one), 413, /100000 images/);
    await expectError(await postBinary({ inputs: [oneInput] }, new Uint8Array(12 * 2 ** 20)), 413, /limit/);
    await expectError(await postBinary({ inputs: [oneInput] }, one, { 'content-type': 'text/plain' }), 415, /octet-stream/);
    expect((await postBinary({ inputs: [oneInput] }, one)).status).toBe(200);
  });
});

import { describe, expect, it } from 'vitest';
import { MAX_BATCH, MAX_BODY, expectV1Error, expectV2Error, flatImage, image28, image28x1, logLines, post, range, small, toJpeg, toPng, useServingFixture } from './helpers/serving-fixture.js';

// The model's answers do not matter here, only that one is served: the seeded initial weights, untrained.
useServingFixture({ trained: false, promoted: true });

describe('bad input is a 4xx, never a 5xx', () => {
  const pred = (body: unknown, url = small) => post(`${url}/v1/models/mnist:predict`, body);
  const infer = (input: unknown, url = small) => post(`${url}/v2/models/mnist/infer`, { inputs: [input] });
  const img = flatImage(0);
  const bad28 = (v: unknown) => image28(0).map((row, r) => (r === 5 ? row.map((x, c) => (c === 7 ? v : x)) : row));

  const v1Cases: [string, () => Promise<Response>, number, string][] = [
    ['unknown model (predict)', () => post(`${small}/v1/models/resnet:predict`, { instances: [img] }), 404, 'model_not_found'],
    ['unknown model (status)', () => fetch(`${small}/v1/models/resnet`), 404, 'model_not_found'],
    ['unknown model (metadata)', () => fetch(`${small}/v1/models/resnet/metadata`), 404, 'model_not_found'],
    ['unknown model (classify)', () => post(`${small}/v1/models/resnet:classify`, toPng(0), { 'content-type': 'image/png' }), 404, 'model_not_found'],
    ['no instances or inputs', () => pred({ images: [img] }), 400, 'missing_field'],
    ['a JSON array body', () => pred([img]), 400, 'invalid_body'],
    ['instances not a list', () => pred({ instances: 'digits' }), 400, 'invalid_shape'],
    ['empty instances', () => pred({ instances: [] }), 400, 'invalid_shape'],
    ['an image of 100 values', () => pred({ instances: [img.slice(0, 100)] }), 400, 'invalid_shape'],
    ['an image of 785 values', () => pred({ instances: [[...img, 0]] }), 400, 'invalid_shape'],
    ['28 rows of 27', () => pred({ inputs: [image28(0).map((r) => r.slice(1))] }), 400, 'invalid_shape'],
    ['two channels', () => pred({ inputs: [image28(0).map((r) => r.map((v) => [v, v]))] }), 400, 'invalid_shape'],
    ['a scalar image', () => pred({ instances: [0.5] }), 400, 'invalid_shape'],
    ['a [1,28,28,1] image', () => pred({ instances: [[image28x1(0)]] }), 400, 'invalid_shape'],
    ['string pixels', () => pred({ instances: [img.map(String)] }), 400, 'invalid_dtype'],
    ['a null pixel', () => pred({ inputs: [bad28(null)] }), 400, 'invalid_dtype'],
    ['a boolean pixel', () => pred({ instances: [img.map((v, i) => (i === 3 ? true : v))] }), 400, 'invalid_dtype'],
    ["'NaN' as a pixel", () => pred({ instances: [img.map((v, i) => (i === 9 ? 'NaN' : v))] }), 400, 'invalid_dtype'],
    ['an infinite pixel (1e999)', () => post(`${small}/v1/models/mnist:predict`, `{"instances":[[${img.map((v, i) => (i === 9 ? '1e999' : String(v))).join(',')}]]}`), 400, 'non_finite'],
    ['0..255 pixels', () => pred({ instances: [img.map((v) => v * 255)] }), 400, 'out_of_range'],
    ['a pixel of 1.5', () => pred({ inputs: [bad28(1.5)] }), 400, 'out_of_range'],
    ['a negative pixel', () => pred({ instances: [img.map((v, i) => (i === 0 ? -0.1 : v))] }), 400, 'out_of_range'],
    ['a batch over maxBatch', () => pred({ instances: range(MAX_BATCH + 1).map(() => img) }), 413, 'batch_too_large'],
    ['a body over maxBodyBytes', () => pred({ instances: [img], pad: 'x'.repeat(MAX_BODY) }), 413, 'body_too_large'],
    ['JSON that does not parse', () => post(`${small}/v1/models/mnist:predict`, '{"instances": [[0.1, 0.2'), 400, 'invalid_json'],
    ['text/plain', () => post(`${small}/v1/models/mnist:predict`, JSON.stringify({ instances: [img] }), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['no body at all', () => fetch(`${small}/v1/models/mnist:predict`, { method: 'POST' }), 400, 'invalid_body'],
  ];
  for (const [name, send, status, code] of v1Cases) {
    it(`v1 predict/status: ${name} → ${status} ${code}`, async () => {
      await expectV1Error(await send(), status, code);
    });
  }

  const good = { name: 'images', shape: [1, 784], datatype: 'FP32', data: img };
  const v2Cases: [string, () => Promise<Response>, number][] = [
    ['unknown model (infer)', () => post(`${small}/v2/models/resnet/infer`, { inputs: [good] }), 404],
    ['unknown model (metadata)', () => fetch(`${small}/v2/models/resnet`), 404],
    ['unknown model (ready)', () => fetch(`${small}/v2/models/resnet/ready`), 404],
    ['no inputs', () => post(`${small}/v2/models/mnist/infer`, { outputs: [] }), 400],
    ['two inputs', () => post(`${small}/v2/models/mnist/infer`, { inputs: [good, good] }), 400],
    ['an input that is not an object', () => infer('images'), 400],
    ['datatype INT32', () => infer({ ...good, datatype: 'INT32' }), 400],
    ['datatype BYTES with strings', () => infer({ ...good, datatype: 'BYTES', data: img.map(String) }), 400],
    ['no datatype', () => infer({ ...good, datatype: undefined }), 400],
    ['shape [1,783]', () => infer({ ...good, shape: [1, 783] }), 400],
    ['shape [1,28,27]', () => infer({ ...good, shape: [1, 28, 27] }), 400],
    ['shape [1,28,28,3]', () => infer({ ...good, shape: [1, 28, 28, 3] }), 400],
    ['shape [-1,784]', () => infer({ ...good, shape: [-1, 784] }), 400],
    ['shape as a string', () => infer({ ...good, shape: '1,784' }), 400],
    ['data shorter than the shape', () => infer({ ...good, shape: [2, 784] }), 400],
    ['data not a list', () => infer({ ...good, data: 'pixels' }), 400],
    ['string data', () => infer({ ...good, data: img.map(String) }), 400],
    ['a null in the data', () => infer({ ...good, data: img.map((v, i) => (i === 2 ? null : v)) }), 400],
    ["'NaN' in the data", () => infer({ ...good, data: img.map((v, i) => (i === 2 ? 'NaN' : v)) }), 400],
    ['a value above 1', () => infer({ ...good, data: img.map((v, i) => (i === 2 ? 7 : v)) }), 400],
    ['a batch over maxBatch', () => infer({ ...good, shape: [MAX_BATCH + 1, 784] }), 413],
    ['a body over maxBodyBytes', () => post(`${small}/v2/models/mnist/infer`, { inputs: [good], pad: 'x'.repeat(MAX_BODY) }), 413],
    ['JSON that does not parse', () => post(`${small}/v2/models/mnist/infer`, '{"inputs": ['), 400],
    ['text/plain', () => post(`${small}/v2/models/mnist/infer`, JSON.stringify({ inputs: [good] }), { 'content-type': 'text/plain' }), 415],
  ];
  for (const [name, send, status] of v2Cases) {
    it(`v2 infer: ${name} → ${status} {"error": "..."}`, async () => {
      await expectV2Error(await send(), status);
    });
  }

  const hugePng = () => {
    const png = Buffer.from(toPng(0));
    png.writeUInt32BE(100_000, 16); // IHDR width
    png.writeUInt32BE(100_000, 20); // IHDR height
    return png;
  };
  const multipart = (parts: string, boundary = 'XyZ') =>
    post(`${small}/v1/models/mnist:classify`, parts, { 'content-type': `multipart/form-data; boundary=${boundary}` });
  const form = (...files: [string, Buffer][]) => {
    const f = new FormData();
    for (const [name, bytes] of files) f.append('images', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), name);
    return f;
  };
  const classifyCases: [string, () => Promise<Response>, number, string?][] = [
    ['an undecodable PNG (signature, then garbage)', () => post(`${small}/v1/models/mnist:classify`, Buffer.concat([toPng(0).subarray(0, 40), Buffer.alloc(60, 7)]), { 'content-type': 'image/png' }), 400, 'undecodable_image'],
    ['a truncated JPEG', () => post(`${small}/v1/models/mnist:classify`, toJpeg(0).subarray(0, 200), { 'content-type': 'image/jpeg' }), 400, 'undecodable_image'],
    ['bytes that are no image at all', () => post(`${small}/v1/models/mnist:classify`, Buffer.from('GIF89a not really'), { 'content-type': 'image/gif' }), 415, 'unsupported_image'],
    ['a PNG declaring 100000x100000 pixels', () => post(`${small}/v1/models/mnist:classify`, hugePng(), { 'content-type': 'image/png' }), 413, 'image_too_large'],
    ['one bad file among good ones (multipart)', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(['ok.png', toPng(0)], ['bad.png', Buffer.from('nope')]) }), 415, 'unsupported_image'],
    ['an empty multipart body', () => multipart('--XyZ--\r\n'), 400],
    ['a multipart body with no files', () => multipart('--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'), 400, 'no_files'],
    ['a multipart body cut short', () => multipart('--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG'), 400],
    ['multipart without a boundary', () => post(`${small}/v1/models/mnist:classify`, 'x', { 'content-type': 'multipart/form-data' }), 400, 'invalid_multipart'],
    ['an empty raw body', () => post(`${small}/v1/models/mnist:classify`, new Uint8Array(0), { 'content-type': 'image/png' }), 400, 'empty_body'],
    ['text/plain', () => post(`${small}/v1/models/mnist:classify`, 'a digit', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['JSON', () => post(`${small}/v1/models/mnist:classify`, { instances: [img] }), 415, 'unsupported_media_type'],
    ['more files than maxBatch', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(...range(MAX_BATCH + 1).map((i) => [`${i}.png`, toPng(i)] as [string, Buffer])) }), 413],
    ['a raw body over maxBodyBytes', () => post(`${small}/v1/models/mnist:classify`, Buffer.alloc(MAX_BODY + 1, 1), { 'content-type': 'image/png' }), 413, 'body_too_large'],
    ['one file over maxBodyBytes', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(['big.png', Buffer.alloc(MAX_BODY + 10, 1)]) }), 413],
    ['files that together exceed maxBodyBytes', () => fetch(`${small}/v1/models/mnist:classify`, { method: 'POST', body: form(...range(3).map((i) => [`${i}.png`, Buffer.alloc(MAX_BODY / 2, 1)] as [string, Buffer])) }), 413],
    ['invert=maybe', () => post(`${small}/v1/models/mnist:classify?invert=maybe`, toPng(0), { 'content-type': 'image/png' }), 400, 'invalid_query'],
  ];
  for (const [name, send, status, code] of classifyCases) {
    it(`classify: ${name} → ${status}`, async () => {
      await expectV1Error(await send(), status, code);
    });
  }

  it('unknown routes are 404 in the error shape', async () => {
    await expectV1Error(await fetch(`${small}/v1/models/mnist:explain`, { method: 'POST' }), 404, 'route_not_found');
  });

  it('left no 5xx behind: no unhandled error was logged and the server still serves', async () => {
    expect(logLines.filter((l) => l.includes('unhandled error'))).toEqual([]);
    const res = await pred({ instances: [img] });
    expect(res.status).toBe(200);
  });
});

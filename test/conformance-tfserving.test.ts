import { describe, expect, it } from 'vitest';
import { INPUT_SHAPE, NUM_CLASSES, PIXELS } from '../services/core/model.js';
import { postJson, useLiveServing } from './helpers/live-serving.js';

/**
 * The TensorFlow Serving REST API (tensorflow/serving, "RESTful API": model status, model
 * metadata, classify/regress, predict in the row and columnar formats, errors), section by
 * section, against a live serving function (a spawned `edgefl serve`).
 */
const s = useLiveServing();

const digit = (k: number) => Array.from({ length: PIXELS }, (_, i) => ((i * 5 + k * 17) % 13) / 12);
const predict = (body: unknown, version?: string) => postJson(`${s.url}/v1/models/mnist${version ? `/versions/${version}` : ''}:predict`, body);

/** TF Serving's error shape: {"error": "<message>"}; edgefl adds a machine-readable "code" beside it. */
async function expectError(res: Response, status: number, code?: string, message?: RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['code', 'error']);
  expect(typeof body.error).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
  if (code) expect(body.code).toBe(code);
  if (message) expect(body.error).toMatch(message);
}

describe('model status API', () => {
  const available = () => [{ version: s.version, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }];

  it('GET /v1/models/{m} and /v1/models/{m}/versions/{s.version} list the loaded version as AVAILABLE', async () => {
    const plain = (await (await fetch(`${s.url}/v1/models/mnist`)).json()) as Record<string, unknown>;
    expect(plain.model_version_status).toEqual(available());
    // edgefl reports the served version and whether it is a canary beside TF Serving's fields
    expect(plain).toMatchObject({ served_version: s.version, canary: false });
    const versioned = await fetch(`${s.url}/v1/models/mnist/versions/${s.version}`);
    expect(versioned.status).toBe(200);
    expect(((await versioned.json()) as Record<string, unknown>).model_version_status).toEqual(available());
  });

  it('a version that is not loaded, or an unknown model, is a 404 error', async () => {
    await expectError(await fetch(`${s.url}/v1/models/mnist/versions/${Number(s.version) + 7}`), 404, 'version_not_loaded', /not loaded/);
    await expectError(await fetch(`${s.url}/v1/models/inception`), 404, 'model_not_found');
  });
});

describe('model metadata API', () => {
  it('GET .../metadata and .../versions/{s.version}/metadata give the model spec and the serving_default signature', async () => {
    for (const path of ['/v1/models/mnist/metadata', `/v1/models/mnist/versions/${s.version}/metadata`]) {
      const body = (await (await fetch(s.url + path)).json()) as Record<string, any>;
      expect(body.model_spec).toEqual({ name: 'mnist', version: s.version, signature_name: 'serving_default' });
      const sig = body.metadata.signature_def.signature_def.serving_default;
      expect(sig.method_name).toBe('tensorflow/serving/predict');
      expect(sig.inputs.images.dtype).toBe('DT_FLOAT');
      expect(sig.inputs.images.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(['-1', ...INPUT_SHAPE.map(String)]);
      expect(sig.outputs.probabilities.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(['-1', String(NUM_CLASSES)]);
    }
    await expectError(await fetch(`${s.url}/v1/models/mnist/versions/0/metadata`), 404, 'version_not_loaded');
  });
});

describe('predict API: row format ("instances" → "predictions")', () => {
  it('answers one row of probabilities per instance, unversioned and versioned alike', async () => {
    const body = { instances: [digit(1), digit(2), digit(3)] };
    const res = await predict(body);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-model-version')).toBe(s.version);
    const out = (await res.json()) as { predictions: number[][]; model_version: string };
    expect(out.predictions).toHaveLength(3);
    for (const row of out.predictions) {
      expect(row).toHaveLength(NUM_CLASSES);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    }
    expect(out.model_version).toBe(s.version);
    const versioned = (await (await predict(body, s.version)).json()) as { predictions: number[][] };
    expect(versioned.predictions).toEqual(out.predictions);
    expect('outputs' in versioned).toBe(false);
  });

  it('instances may name the input ({"images": ...}) and be flat, HxW or HxWxC', async () => {
    const rows = (img: number[]) => Array.from({ length: INPUT_SHAPE[0] }, (_, r) => img.slice(r * INPUT_SHAPE[1], (r + 1) * INPUT_SHAPE[1]));
    const want = ((await (await predict({ instances: [digit(4)] })).json()) as { predictions: number[][] }).predictions;
    for (const instance of [{ images: digit(4) }, rows(digit(4)), rows(digit(4)).map((r) => r.map((x) => [x]))]) {
      expect(((await (await predict({ instances: [instance] })).json()) as { predictions: number[][] }).predictions).toEqual(want);
    }
    await expectError(await predict({ instances: [{ pixels: digit(4) }] }), 400, 'invalid_input', /'images'/);
  });
});

describe('predict API: columnar format ("inputs" → "outputs")', () => {
  it('answers "outputs" with the same values the row format gives', async () => {
    const images = [digit(5), digit(6)];
    const row = (await (await predict({ instances: images })).json()) as { predictions: number[][] };
    const res = await predict({ inputs: images });
    expect(res.status).toBe(200);
    const col = (await res.json()) as { outputs: number[][] };
    expect('predictions' in col).toBe(false);
    expect(col.outputs).toEqual(row.predictions);
    const named = (await (await predict({ inputs: { images } }, s.version)).json()) as { outputs: number[][] };
    expect(named.outputs).toEqual(row.predictions);
  });

  it('a columnar map naming another input, or both formats at once, is a 400', async () => {
    await expectError(await predict({ inputs: { pixels: [digit(1)] } }), 400, 'invalid_input');
    await expectError(await predict({ instances: [digit(1)], inputs: [digit(1)] }), 400, 'invalid_body', /either/);
  });
});

describe('signature_name', () => {
  it('serving_default (the only signature) is accepted; any other is a 400 naming it', async () => {
    expect((await predict({ signature_name: 'serving_default', instances: [digit(1)] })).status).toBe(200);
    await expectError(await predict({ signature_name: 'classify_x', instances: [digit(1)] }), 400, 'signature_not_found', /'classify_x'/);
    await expectError(await predict({ signature_name: 7, instances: [digit(1)] }), 400);
  });
});

describe('classify and regress APIs', () => {
  it("TF Serving's Example-based classify is refused clearly (this route classifies image files)", async () => {
    const res = await postJson(`${s.url}/v1/models/mnist:classify`, { signature_name: 'serving_default', examples: [{ x: 1 }] });
    await expectError(res, 415, 'unsupported_media_type', /Classify API/);
  });

  it('regress is refused clearly, unversioned and versioned', async () => {
    await expectError(await postJson(`${s.url}/v1/models/mnist:regress`, { examples: [{ x: 1 }] }), 400, 'unsupported_api', /Regress API/);
    await expectError(await postJson(`${s.url}/v1/models/mnist/versions/${s.version}:regress`, { examples: [] }), 400, 'unsupported_api');
  });

  it('image upload to :classify works on the versioned route too', async () => {
    const { PNG } = await import('pngjs');
    const png = new PNG({ width: INPUT_SHAPE[1], height: INPUT_SHAPE[0] });
    digit(3).forEach((x, i) => png.data.set([x * 255, x * 255, x * 255, 255], i * 4));
    const res = await fetch(`${s.url}/v1/models/mnist/versions/${s.version}:classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(PNG.sync.write(png)) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { results: unknown[] }).results).toHaveLength(1);
  });
});

describe('errors: {"error": "<message>"}', () => {
  it('bad bodies, unknown models, versions not loaded and unknown routes all answer the TF Serving shape', async () => {
    await expectError(await predict('{"instances": [[0.1,'), 400, 'invalid_json');
    await expectError(await predict({}), 400, 'missing_field');
    await expectError(await predict({ instances: [digit(1).map((x) => x * 255)] }), 400, 'out_of_range');
    await expectError(await postJson(`${s.url}/v1/models/inception:predict`, { instances: [digit(1)] }), 404, 'model_not_found');
    await expectError(await predict({ instances: [digit(1)] }, String(Number(s.version) + 1)), 404, 'version_not_loaded');
    await expectError(await postJson(`${s.url}/v1/models/mnist:explain`, {}), 404, 'route_not_found');
  });
});

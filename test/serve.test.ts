import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../lib/serve/app';
import { encodeBmp } from '../lib/serve/bmp';
import { loadServedModels } from '../lib/serve/models';
import { makeTinyPackage, testImage, useWasm } from './support/tiny-package';

let root: string;
let runsDir: string;
let app: FastifyInstance;
let png: Buffer;

const form = (fields: Record<string, string>, files: { field?: string; name: string; data: Buffer }[]) => {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  for (const file of files) f.append(file.field ?? 'image', new Blob([new Uint8Array(file.data)]), file.name);
  return f;
};

async function pngSize(dataUri: string) {
  expect(dataUri).toMatch(/^data:image\/png;base64,/);
  const meta = await sharp(Buffer.from(dataUri.split(',')[1], 'base64')).metadata();
  return [meta.width, meta.height];
}

beforeAll(async () => {
  await useWasm();
  root = await mkdtemp(join(tmpdir(), 'serve-test-'));
  runsDir = join(root, 'runs');
  // Two categories, and an older + an uncalibrated package of one of them: discovery must pick the newest
  // calibrated one per category.
  await makeTinyPackage(join(runsDir, 'demo', 'r1', 'widget', 'checkpoint', 'package'), {
    runId: 'r1',
    pipeline: 'demo',
  });
  await makeTinyPackage(join(runsDir, 'demo', 'r2', 'gadget', 'checkpoint', 'package'), {
    category: 'gadget',
    runId: 'r2',
    pipeline: 'demo',
  });
  await makeTinyPackage(join(runsDir, 'demo', 'r3', 'widget', 'checkpoint', 'package'), {
    runId: 'r3',
    pipeline: 'demo',
  });
  // Uncalibrated (a checkpoint step's package): reported only when its category has nothing servable.
  await makeTinyPackage(join(runsDir, 'demo', 'r4', 'widget', 'checkpoint', 'package'), {
    runId: 'r4',
    pipeline: 'demo',
    calibration: null,
  });
  await makeTinyPackage(join(runsDir, 'demo', 'r4', 'orphan', 'checkpoint', 'package'), {
    category: 'orphan',
    runId: 'r4',
    pipeline: 'demo',
    calibration: null,
  });
  await mkdir(join(runsDir, 'demo', 'r3', 'widget', 'report'), { recursive: true });
  await writeFile(join(runsDir, 'demo', 'r3', 'widget', 'report', 'report.html'), '<h1>widget report</h1>');
  const { models, skipped } = await loadServedModels(runsDir);
  expect(models.map((m) => `${m.category}:${m.pkg.metadata.runId}`).sort()).toEqual([
    'gadget:r2',
    'widget:r3',
  ]);
  expect(skipped.map((s) => s.reason).join('\n')).toMatch(
    /orphan\/checkpoint\/package\/calibration\.json: missing/,
  );
  expect(skipped.map((s) => s.dir).join('\n')).not.toMatch(/r4\/widget/);
  ({ app } = await buildServer({ models, maxBodyMb: 0.25, maxPixels: 200 * 200, maxFiles: 4 }));
  png = await testImage('png');
});
afterAll(async () => {
  await app?.close();
  await rm(root, { recursive: true, force: true });
});

describe('prediction API', () => {
  it('scores a multipart upload: score, normalised score, threshold, verdict, heatmap and mask PNGs', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/predict',
      payload: form({ category: 'widget' }, [{ name: 'a.png', data: png }]),
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ category: 'widget', model: { runId: 'r3' }, name: 'a.png', threshold: 0.5 });
    expect(body.image).toEqual({ format: 'png', width: 48, height: 48 });
    expect(Number.isFinite(body.score)).toBe(true);
    expect(body.normalisedScore).toBeGreaterThanOrEqual(0);
    expect(body.normalisedScore).toBeLessThanOrEqual(1);
    expect(body.verdict).toBe(body.score >= 0.5 ? 'defective' : 'good');
    expect(await pngSize(body.heatmap)).toEqual([32, 32]);
    expect(await pngSize(body.mask)).toEqual([32, 32]);
  });

  it('accepts JSON with base64 or a data URI, and every supported format', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/predict?heatmap=false',
      payload: { category: 'gadget', image: png.toString('base64') },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().heatmap).toBeUndefined();
    const raw = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const bmp = Buffer.from(encodeBmp({ width: raw.info.width, height: raw.info.height, data: raw.data }));
    for (const [fmt, data] of [
      ['jpeg', await testImage('jpeg')],
      ['webp', await testImage('webp')],
      ['tiff', await testImage('tiff')],
      ['bmp', bmp],
    ] as const) {
      const r = await app.inject({
        method: 'POST',
        url: '/v1/predict',
        payload: { category: 'widget', image: `data:image/x;base64,${data.toString('base64')}` },
      });
      expect(r.statusCode, fmt).toBe(200);
      expect(r.json().image.format).toBe(fmt);
    }
  });

  it('batch: scores several images, lists undecodable ones by name', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/predict/batch',
      payload: form({ category: 'widget' }, [
        { field: 'images', name: 'ok1.png', data: png },
        { field: 'images', name: 'broken.png', data: png.subarray(0, 60) },
        { field: 'images', name: 'ok2.png', data: await testImage('png', { defect: true }) },
      ]),
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.results.map((r: { name: string }) => r.name)).toEqual(['ok1.png', 'ok2.png']);
    expect(body.failed).toEqual([
      { name: 'broken.png', error: expect.objectContaining({ code: 'CORRUPT_IMAGE' }) },
    ]);
  });

  const bad: [string, () => Promise<InjectOptions>, number, string, RegExp][] = [
    [
      'not an image',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: form({ category: 'widget' }, [{ name: 'x.png', data: Buffer.from('hello, I am text') }]),
      }),
      415,
      'NOT_AN_IMAGE',
      /'x\.png' is not an image .*supported: png, jpeg, webp, tiff, bmp/,
    ],
    [
      'truncated image',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: form({ category: 'widget' }, [{ name: 't.png', data: png.subarray(0, 60) }]),
      }),
      422,
      'CORRUPT_IMAGE',
      /'t\.png' \(png\) cannot be/,
    ],
    [
      'body too large (multipart)',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: form({ category: 'widget' }, [
          { name: 'big.png', data: Buffer.concat([png, Buffer.alloc(300_000)]) },
        ]),
      }),
      413,
      'BODY_TOO_LARGE',
      /larger than the limit of 0\.25 MB/,
    ],
    [
      'body too large (JSON)',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: { category: 'widget', image: 'A'.repeat(300_000) },
      }),
      413,
      'BODY_TOO_LARGE',
      /limit of 0\.25 MB/,
    ],
    [
      'dimensions too large',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: form({ category: 'widget' }, [
          {
            name: 'huge.png',
            data: await sharp({ create: { width: 400, height: 300, channels: 3, background: '#888' } })
              .png()
              .toBuffer(),
          },
        ]),
      }),
      413,
      'IMAGE_TOO_LARGE',
      /'huge\.png' is 400x300 \(120,000 pixels\); the limit is 40,000 pixels/,
    ],
    [
      'unknown category',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: form({ category: 'toaster' }, [{ name: 'a.png', data: png }]),
      }),
      404,
      'UNKNOWN_CATEGORY',
      /unknown category 'toaster'; loaded models: gadget, widget/,
    ],
    [
      'missing category with several models',
      async () => ({ method: 'POST', url: '/v1/predict', payload: form({}, [{ name: 'a.png', data: png }]) }),
      400,
      'MISSING_FIELD',
      /missing field "category" \(one of: gadget, widget\)/,
    ],
    [
      'missing file field',
      async () => ({ method: 'POST', url: '/v1/predict', payload: form({ category: 'widget' }, []) }),
      400,
      'MISSING_FIELD',
      /no image in the form: add a file field named "image"/,
    ],
    [
      'missing JSON image',
      async () => ({ method: 'POST', url: '/v1/predict', payload: { category: 'widget' } }),
      400,
      'MISSING_FIELD',
      /missing field "image"/,
    ],
    [
      'bad JSON',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        headers: { 'content-type': 'application/json' },
        payload: '{"category": ',
      }),
      400,
      'BAD_JSON',
      /not valid JSON/,
    ],
    [
      'bad base64',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        payload: { category: 'widget', image: '%%%not base64' },
      }),
      400,
      'BAD_REQUEST',
      /image: not valid base64/,
    ],
    [
      'unsupported content type',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        headers: { 'content-type': 'text/plain' },
        payload: 'hi',
      }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      /multipart\/form-data/,
    ],
    [
      'too many images',
      async () => ({
        method: 'POST',
        url: '/v1/predict/batch',
        payload: { category: 'widget', images: Array(5).fill(png.toString('base64')) },
      }),
      413,
      'TOO_MANY_FILES',
      /at most 4 per request/,
    ],
    [
      'malformed multipart',
      async () => ({
        method: 'POST',
        url: '/v1/predict',
        headers: { 'content-type': 'multipart/form-data' },
        payload: 'no boundary',
      }),
      400,
      'BAD_REQUEST',
      /malformed multipart\/form-data body/,
    ],
    [
      'JSON image of the wrong type',
      async () => ({ method: 'POST', url: '/v1/predict', payload: { category: 'widget', image: 5 } }),
      400,
      'BAD_REQUEST',
      /must be a base64 string, a data URI/,
    ],
    [
      'unknown route',
      async () => ({ method: 'GET', url: '/v2/nothing' }),
      404,
      'NOT_FOUND',
      /no route GET \/v2\/nothing/,
    ],
  ];
  for (const [name, req, status, code, message] of bad) {
    it(`bad input: ${name} -> ${status} ${code}`, async () => {
      const res = await app.inject(await req());
      expect(res.statusCode).toBe(status);
      const body = res.json();
      expect(body.error.code).toBe(code);
      expect(body.error.message).toMatch(message);
    });
  }
});

describe('robustness', () => {
  it('mutated and truncated images never produce a 5xx', async () => {
    const raw = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const seeds = [
      png,
      await testImage('jpeg'),
      await testImage('webp'),
      await testImage('tiff'),
      Buffer.from(encodeBmp({ width: raw.info.width, height: raw.info.height, data: raw.data })),
    ];
    let state = 12345;
    const rand = (n: number) => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const statuses = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const buf = Buffer.from(seeds[i % seeds.length]);
      // Keep the magic bytes (so the decoder, not the sniffer, meets the damage), then corrupt or cut.
      if (i % 3 === 0) {
        const cut = buf.subarray(0, 12 + rand(buf.length - 12));
        buf.fill(0);
        cut.copy(buf);
      }
      for (let k = 0; k < 1 + rand(20); k++) buf[12 + rand(buf.length - 12)] = rand(256);
      const res = await app.inject({
        method: 'POST',
        url: '/v1/predict?heatmap=false',
        payload: { category: 'widget', image: buf.toString('base64') },
      });
      statuses.add(res.statusCode);
      expect(res.statusCode, `case ${i}: ${res.body}`).toBeLessThan(500);
    }
    expect([...statuses].every((s) => s === 200 || s === 422 || s === 415 || s === 413)).toBe(true);
  });
});

describe('service endpoints', () => {
  it('health, readiness, models', async () => {
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await app.inject('/readyz');
    expect(ready.statusCode).toBe(200);
    const models = (await app.inject('/v1/models')).json().models;
    expect(models.map((m: { category: string }) => m.category)).toEqual(['gadget', 'widget']);
    expect(models[1]).toMatchObject({
      imageSize: 32,
      reports: '/reports/demo/r3/',
      calibration: { imageThreshold: 0.5 },
    });
  });

  it('/metrics exposes requests, latency histogram and errors by code', async () => {
    const text = (await app.inject('/metrics')).body;
    expect(text).toMatch(
      /anomaly_spotter_http_requests_total\{method="POST",route="\/v1\/predict",status="200"\} \d+/,
    );
    expect(text).toMatch(
      /anomaly_spotter_http_request_duration_seconds_bucket\{le="0\.1",route="\/v1\/predict"\}/,
    );
    expect(text).toMatch(/anomaly_spotter_inference_seconds_per_image_count\{category="widget"\} \d+/);
    expect(text).toMatch(/anomaly_spotter_errors_total\{code="NOT_AN_IMAGE"\} 1/);
    expect(text).toMatch(/anomaly_spotter_images_total\{category="widget",verdict="(good|defective)"\}/);
  });

  it('/openapi.json documents every API route', async () => {
    const doc = (await app.inject('/openapi.json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/v1/predict', '/v1/predict/batch', '/v1/models', '/healthz', '/readyz', '/metrics']) {
      expect(doc.paths[p], p).toBeDefined();
    }
  });

  it('/openapi.json documents every route the server registers, and nothing else', async () => {
    const { models } = await loadServedModels(runsDir);
    const routes: { method: string; url: string }[] = [];
    const { app: probe } = await buildServer({
      models,
      onRoute: (r) => {
        // HEAD twins of GET routes and the static files (web page, report files) are not API routes.
        const methods = ([] as string[]).concat(r.method).filter((m) => m !== 'HEAD');
        if (!(r.schema as { hide?: boolean } | undefined)?.hide)
          for (const method of methods) routes.push({ method: method.toLowerCase(), url: r.url });
      },
    });
    try {
      const doc = (await probe.inject('/openapi.json')).json();
      expect(routes.length).toBeGreaterThanOrEqual(9);
      for (const { method, url } of routes)
        expect(doc.paths[url]?.[method], `${method} ${url}`).toBeDefined();
      const documented = Object.entries(doc.paths as Record<string, object>).flatMap(([url, ops]) =>
        Object.keys(ops).map((method) => `${method} ${url}`),
      );
      expect(documented.sort()).toEqual(routes.map((r) => `${r.method} ${r.url}`).sort());
      // The request and response shapes come from the zod schemas the routes declare.
      const predict = doc.paths['/v1/predict'].post;
      expect(Object.keys(predict.requestBody.content).sort()).toEqual([
        'application/json',
        'multipart/form-data',
      ]);
      expect(predict.parameters.map((p: { name: string }) => p.name)).toEqual(['heatmap']);
      expect(doc.components.schemas.ImageResult.properties.verdict.enum).toEqual(['defective', 'good']);
      expect(doc.components.schemas.Error.properties.error.properties.code.enum).toContain(
        'UNKNOWN_CATEGORY',
      );
    } finally {
      await probe.close();
    }
  });

  it('serves the web page and the runs’ reports, never model files', async () => {
    const page = await app.inject('/');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Anomaly Spotter');
    const index = await app.inject('/reports/');
    expect(index.body).toContain('href="/reports/demo/r3/widget/report/report.html"');
    expect((await app.inject('/reports/demo/r3/widget/report/report.html')).body).toContain('widget report');
    expect(
      (await app.inject('/reports/demo/r3/widget/checkpoint/package/weights.bin')).statusCode,
    ).toBeGreaterThanOrEqual(400);
    expect(
      (await app.inject('/reports/demo/r3/widget/checkpoint/package/metadata.json')).statusCode,
    ).toBeGreaterThanOrEqual(400);
  });
});

describe('bearer token auth', () => {
  let secured: FastifyInstance;
  beforeAll(async () => {
    const { models } = await loadServedModels(join(runsDir, 'demo', 'r2', 'gadget', 'checkpoint', 'package'));
    ({ app: secured } = await buildServer({ models, token: 's3cret' }));
  });
  afterAll(async () => secured?.close());

  it('401 without or with a wrong token, 200 with it; health stays open', async () => {
    const req = (headers: Record<string, string>) =>
      secured.inject({
        method: 'POST',
        url: '/v1/predict?heatmap=false',
        headers,
        payload: { image: png.toString('base64') },
      });
    const none = await req({});
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatchObject({
      code: 'UNAUTHORIZED',
      message: expect.stringMatching(/missing bearer token/),
    });
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const wrong = await req({ authorization: 'Bearer nope' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.message).toBe('invalid bearer token');
    // One model loaded: category may be omitted.
    const ok = await req({ authorization: 'Bearer s3cret' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().category).toBe('gadget');
    expect(
      (await secured.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret' } })).statusCode,
    ).toBe(200);
    expect((await secured.inject('/metrics')).statusCode).toBe(401);
    // The cookie (set by the web page for report links) opens /reports only, never the API.
    const cookie = { cookie: 'anomaly_spotter_token=s3cret' };
    expect((await secured.inject({ url: '/reports/', headers: cookie })).statusCode).toBe(200);
    expect((await secured.inject({ url: '/metrics', headers: cookie })).statusCode).toBe(401);
    expect((await secured.inject('/healthz')).statusCode).toBe(200);
  });
});

/**
 * The HTTP server: prediction API, model list, health, metrics, OpenAPI document, the web page (`/`)
 * and the loaded runs' reports (`/reports/...`). Built as a Fastify instance without listening, so
 * tests drive it with `inject` and the CLI decides where it listens.
 */
import { timingSafeEqual } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { ApiError, toApiError } from './api-error';
import { heatmapPng, maskPng } from './heatmap';
import { DEFAULT_MAX_PIXELS, type DecodedImage, decodeImage, ImageInputError } from './image-input';
import { createMetrics, type ServeMetrics } from './metrics';
import type { ServedModel } from './models';
import { buildOpenApi } from './openapi';
import { loadDefaultScorer, ModelPredictor, type Prediction, type Scorer } from './predictor';
import { readImageRequest } from './request-images';

export const PUBLIC_DIR = fileURLToPath(new URL('./public', import.meta.url));
/** Cookie the web page sets so that report links (plain navigation, no headers) pass the token check. */
export const TOKEN_COOKIE = 'anomaly_spotter_token';

export interface ServeOptions {
  models: ServedModel[];
  /** Bearer token required on /v1/*, /metrics and /reports/*; null/undefined: no auth. */
  token?: string | null;
  maxBodyMb?: number;
  /** Images per batch request. */
  maxFiles?: number;
  /** Decompression-bomb guard: largest accepted width*height. */
  maxPixels?: number;
  /** Requests waiting per model before 503 BUSY. */
  maxQueue?: number;
  /** Defaults to lib/eval's scoreImages. */
  scorer?: Scorer;
  /** A pino logger instance, or false to stay quiet (tests). */
  logger?: FastifyBaseLogger | boolean;
  /** What scores requests (engine, execution provider, threads, fallbacks): shown by /healthz. */
  engineInfo?: EngineInfo;
}

/** The inference engine as /healthz reports it. */
export interface EngineInfo {
  name: 'tfjs' | 'onnx';
  executionProvider?: string;
  [key: string]: string | number | boolean | null | undefined;
}

export interface ImageResult {
  name: string;
  score: number;
  normalisedScore: number;
  threshold: number;
  verdict: Prediction['verdict'];
  defectArea: number;
  image: { format: DecodedImage['format']; width: number; height: number };
  /** PNG data URIs (size x size of the model); omitted with `?heatmap=false`. */
  heatmap?: string;
  mask?: string;
}

export interface ImageFailure {
  name: string;
  error: { code: string; message: string };
}

function modelInfo(m: ServedModel) {
  const { metadata, calibration, preprocess, metrics } = m.pkg;
  return {
    category: m.category,
    pipeline: metadata.pipeline,
    runId: metadata.runId,
    createdAt: metadata.createdAt,
    imageSize: preprocess.imageSize,
    architecture: metadata.architecture,
    calibration: {
      imageThreshold: calibration.imageThreshold,
      pixelThreshold: calibration.pixelThreshold,
      strategy: calibration.strategy,
    },
    metrics,
    reports: m.runDir ? `/reports/${metadata.pipeline}/${metadata.runId}/` : null,
  };
}

const pngUri = (buf: Buffer) => `data:image/png;base64,${buf.toString('base64')}`;

/** HTML files of a run folder (reports), relative paths, bounded depth. */
async function findReports(runDir: string, depth = 3): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, left: number) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isFile() && e.name.endsWith('.html')) out.push(relative(runDir, p));
      else if (e.isDirectory() && left > 0 && e.name !== 'package') await walk(p, left - 1);
    }
  };
  await walk(runDir, depth);
  return out.sort();
}

const REPORT_EXTENSIONS = /\.(html|css|js|json|png|svg|jpg|jpeg|webp|csv|md|txt)$/i;

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

/**
 * The bearer token of a request. The cookie is accepted only for GET /reports (plain links cannot send
 * headers); the API itself wants the header, so a cookie can never authorise a cross-site POST.
 */
function tokenOf(req: FastifyRequest, allowCookie: boolean): string | null {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m ? m[1].trim() : '';
  }
  if (!allowCookie) return null;
  const cookies = req.headers.cookie ?? '';
  for (const c of cookies.split(';')) {
    const [k, ...v] = c.trim().split('=');
    if (k === TOKEN_COOKIE) return decodeURIComponent(v.join('='));
  }
  return null;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function buildServer(
  opts: ServeOptions,
): Promise<{ app: FastifyInstance; metrics: ServeMetrics }> {
  const maxBodyMb = opts.maxBodyMb ?? 10;
  const maxBodyBytes = Math.round(maxBodyMb * 2 ** 20);
  const maxFiles = opts.maxFiles ?? 16;
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const token = opts.token || null;
  const scorer = opts.scorer ?? (await loadDefaultScorer());
  const models = new Map(
    opts.models.map((m) => [m.category, new ModelPredictor(m, scorer, { maxPending: opts.maxQueue })]),
  );
  const known = () => [...models.keys()].sort().join(', ');
  const metrics = createMetrics();
  const limitsCtx = { maxBodyMb, maxFiles };
  let shuttingDown = false;

  const app = Fastify({
    bodyLimit: maxBodyBytes,
    ...(typeof opts.logger === 'object' ? { loggerInstance: opts.logger } : { logger: opts.logger ?? false }),
  });
  await app.register(multipart, {
    limits: { fileSize: maxBodyBytes, files: maxFiles },
    throwFileSizeLimit: true,
  });

  app.setErrorHandler((err, req, reply) => {
    const api = toApiError(err, limitsCtx);
    if (api.status >= 500) req.log.error({ err }, 'request failed');
    metrics.errors.inc({ code: api.code });
    if (api.status === 401) reply.header('www-authenticate', 'Bearer realm="anomaly-spotter"');
    if (api.status === 503) reply.header('retry-after', '1');
    return reply.status(api.status).send(api.body());
  });
  app.setNotFoundHandler((req) => {
    throw new ApiError(
      404,
      'NOT_FOUND',
      `no route ${req.method} ${req.url.split('?')[0]} (see /openapi.json)`,
    );
  });

  app.addHook('onRequest', async (req) => {
    if (!token) return;
    const path = req.url.split('?')[0];
    if (!(path.startsWith('/v1/') || path === '/metrics' || path.startsWith('/reports'))) return;
    const given = tokenOf(req, req.method === 'GET' && path.startsWith('/reports'));
    if (given === null) {
      throw new ApiError(
        401,
        'UNAUTHORIZED',
        "missing bearer token: send 'Authorization: Bearer <token>' (this server was started with --token or ANOMALY_SPOTTER_TOKEN)",
      );
    }
    if (!sameSecret(given, token)) throw new ApiError(401, 'UNAUTHORIZED', 'invalid bearer token');
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });
  app.addHook('preClose', async () => {
    shuttingDown = true;
  });
  app.addHook('onClose', async () => {
    await Promise.all([...models.values()].map((p) => p.queue.drain()));
  });

  const resolveModel = (category: string | undefined): ModelPredictor => {
    if (category === undefined || category === '') {
      // One model loaded: the category is unambiguous, so clients may omit it.
      if (models.size === 1) return [...models.values()][0];
      throw new ApiError(400, 'MISSING_FIELD', `missing field "category" (one of: ${known()})`);
    }
    const m = models.get(category);
    if (!m)
      throw new ApiError(
        404,
        'UNKNOWN_CATEGORY',
        `unknown category '${category}'; loaded models: ${known()}`,
      );
    return m;
  };

  const wantImages = (req: FastifyRequest) => {
    const q = req.query as Record<string, string | undefined>;
    return !(q.heatmap === 'false' || q.heatmap === '0');
  };

  /** Decodes every image (in parallel, outside the model queue), then scores the good ones in one batch. */
  const runPredict = async (req: FastifyRequest, batch: boolean) => {
    const started = performance.now();
    const { category, images } = await readImageRequest(req, batch, { maxBodyBytes, maxFiles });
    const predictor = resolveModel(category);
    const model = predictor.served;
    const spec = model.pkg.preprocess;
    const decoded = await Promise.all(
      images.map((img) =>
        decodeImage(img.data, spec, { maxPixels, name: img.name }).then(
          (d) => ({ name: img.name, d }),
          (err: unknown) => {
            if (!(err instanceof ImageInputError)) throw err;
            return { name: img.name, err };
          },
        ),
      ),
    );
    if (!batch && 'err' in decoded[0]) throw decoded[0].err;
    const ok = decoded.filter((x): x is { name: string; d: DecodedImage } => 'd' in x);
    const decodeMs = performance.now() - started;
    let inferenceMs = 0;
    const results: ImageResult[] = [];
    if (ok.length > 0) {
      const out = await predictor.predict(ok.map((x) => x.d.tensor));
      inferenceMs = out.inferenceMs;
      const size = spec.imageSize;
      const pixelThreshold = model.pkg.calibration.pixelThreshold;
      const withImages = wantImages(req);
      // Every image's PNGs are encoded at once (sharp's thread pool), not one image after the other.
      const encoded = await Promise.all(
        out.predictions.map((p) =>
          withImages
            ? Promise.all([heatmapPng(p.map, size, pixelThreshold), maskPng(p.map, size, pixelThreshold)])
            : null,
        ),
      );
      for (const [i, p] of out.predictions.entries()) {
        const { d, name } = ok[i];
        metrics.images.inc({ category: model.category, verdict: p.verdict });
        metrics.imageSeconds.observe({ category: model.category }, out.inferenceMs / 1000 / ok.length);
        const r: ImageResult = {
          name,
          score: p.score,
          normalisedScore: p.normalisedScore,
          threshold: p.threshold,
          verdict: p.verdict,
          defectArea: p.defectArea,
          image: { format: d.format, width: d.width, height: d.height },
        };
        const pngs = encoded[i];
        if (pngs) {
          r.heatmap = pngUri(pngs[0]);
          r.mask = pngUri(pngs[1]);
        }
        results.push(r);
      }
    }
    const failed: ImageFailure[] = decoded
      .filter((x): x is { name: string; err: ImageInputError } => 'err' in x)
      .map((x) => {
        metrics.errors.inc({ code: x.err.code });
        return { name: x.name, error: { code: x.err.code, message: x.err.message } };
      });
    const timings = { decodeMs, inferenceMs, totalMs: performance.now() - started };
    return { model: modelInfo(model), results, failed, timings };
  };

  app.post('/v1/predict', async (req) => {
    const { model, results, timings } = await runPredict(req, false);
    return {
      category: model.category,
      model: { pipeline: model.pipeline, runId: model.runId },
      ...results[0],
      timings,
    };
  });
  app.post('/v1/predict/batch', async (req) => {
    const { model, results, failed, timings } = await runPredict(req, true);
    return {
      category: model.category,
      model: { pipeline: model.pipeline, runId: model.runId },
      results,
      failed,
      timings,
    };
  });
  app.get('/v1/models', async () => ({ models: opts.models.map(modelInfo) }));

  app.get('/healthz', async () => ({
    status: 'ok',
    ...(opts.engineInfo ? { engine: opts.engineInfo } : {}),
  }));
  app.get('/readyz', async (_req, reply) => {
    const ready = !shuttingDown && models.size > 0;
    const body = {
      status: ready ? 'ready' : 'not ready',
      models: [...models.values()].map((p) => ({ category: p.served.category, queueDepth: p.queue.depth })),
    };
    return reply.status(ready ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_req, reply) => {
    for (const p of models.values()) metrics.queueDepth.set({ category: p.served.category }, p.queue.depth);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  const openapi = buildOpenApi({ maxBodyMb, maxFiles, auth: token !== null });
  app.get('/openapi.json', async () => openapi);

  // Web page.
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', index: 'index.html', wildcard: false });

  // Reports of the loaded runs: one static mount per run folder, report-like files only (never weights).
  const runs = new Map<string, string>();
  for (const m of opts.models) {
    if (m.runDir) runs.set(`${m.pkg.metadata.pipeline}/${m.pkg.metadata.runId}`, m.runDir);
  }
  for (const [key, dir] of runs) {
    await app.register(fastifyStatic, {
      root: dir,
      prefix: `/reports/${key}/`,
      decorateReply: false,
      index: false,
      dotfiles: 'deny',
      allowedPath: (p) => REPORT_EXTENSIONS.test(p) && !p.split('/').includes('package'),
    });
  }
  app.get('/reports', async (_req, reply) => reply.redirect('/reports/'));
  app.get('/reports/', async (_req, reply) => {
    const items: string[] = [];
    for (const [key, dir] of runs) {
      for (const f of await findReports(dir)) {
        const href = `/reports/${key}/${f.split('/').map(encodeURIComponent).join('/')}`;
        items.push(`<li><a href="${escapeHtml(href)}">${escapeHtml(`${key}/${f}`)}</a></li>`);
      }
    }
    const list = items.length
      ? `<ul>${items.join('')}</ul>`
      : '<p>No report.html files in the loaded runs yet.</p>';
    return reply
      .type('text/html; charset=utf-8')
      .send(
        `<!doctype html><meta charset="utf-8"><title>Run reports</title><link rel="stylesheet" href="/style.css"><main class="reports"><h1>Run reports</h1>${list}<p><a href="/">Back to the predictor</a></p></main>`,
      );
  });

  return { app, metrics };
}

/**
 * The HTTP server: prediction API, model list, health, metrics, the OpenAPI document, the web page (`/`)
 * and the loaded runs' reports (`/reports/...`), one Fastify plugin each (lib/serve/routes/). Routes
 * declare their zod schemas; /openapi.json is generated from them. Built without listening, so tests
 * drive it with `inject` and the CLI decides where it listens.
 */
import { fileURLToPath } from 'node:url';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger, { type FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RouteOptions } from 'fastify';
import {
  createJsonSchemaTransform,
  createJsonSchemaTransformObject,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { ApiError, toApiError } from './api-error';
import { DEFAULT_MAX_PIXELS } from './image-input';
import { createMetrics, type ServeMetrics } from './metrics';
import type { ServedModel } from './models';
import { loadDefaultScorer, ModelPredictor, type Scorer } from './predictor';
import { authPlugin } from './routes/auth';
import type { EngineInfo, ServeContext } from './routes/context';

export type { EngineInfo };

import { opsPlugin } from './routes/ops';
import { predictPlugin } from './routes/predict';
import { reportsPlugin } from './routes/reports';
import { apiSchemas } from './schemas';

export { TOKEN_COOKIE } from './routes/auth';
export type { ImageFailure, ImageResult } from './routes/predict';

export const PUBLIC_DIR = fileURLToPath(new URL('./public', import.meta.url));

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
  /** What scores requests (engine, execution provider, threads, fallbacks): shown by /healthz. */
  engineInfo?: EngineInfo;
  /** Told of every route as it is registered (test/serve.test.ts: each one is documented). */
  onRoute?: (route: RouteOptions) => void;
  /** A pino logger instance, or false to stay quiet (tests). */
  logger?: FastifyBaseLogger | boolean;
}

const zodTransform = createJsonSchemaTransform({ schemaRegistry: apiSchemas });
const zodTransformObject = createJsonSchemaTransformObject({ schemaRegistry: apiSchemas });

/** The zod transform adds an input twin (`ErrorInput`...) of every named schema; keep those in use. */
type OpenApiDoc = { components?: { schemas?: Record<string, unknown> } };

function withoutUnusedSchemas(doc: OpenApiDoc): OpenApiDoc {
  const schemas = doc.components?.schemas;
  if (!schemas) return doc;
  const { components, ...rest } = doc;
  const text = JSON.stringify({ ...rest, components: { ...components, schemas: {} } });
  const used = Object.keys(schemas).filter(
    (name) => !name.endsWith('Input') || text.includes(`"#/components/schemas/${name}"`),
  );
  return {
    ...doc,
    components: { ...components, schemas: Object.fromEntries(used.map((n) => [n, schemas[n]])) },
  };
}

/**
 * Route schemas to OpenAPI: zod schemas through fastify-type-provider-zod; a body given per content type
 * (`{ content: {...} }`, the predict routes' multipart + JSON) is already JSON Schema and passes as is.
 */
const transform: FastifyDynamicSwaggerOptions['transform'] = (doc) => {
  const body = (doc.schema as { body?: unknown } | undefined)?.body;
  const perContentType = typeof body === 'object' && body !== null && 'content' in body;
  if (!perContentType) return zodTransform(doc as never);
  const { body: _, ...rest } = doc.schema as Record<string, unknown>;
  const out = zodTransform({ ...doc, schema: rest } as never);
  return { ...out, schema: { ...out.schema, body } };
};

function openapiInfo(opts: { maxBodyMb: number; maxFiles: number; auth: boolean }) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Anomaly Spotter',
      version: '1',
      description: `Visual anomaly detection per product category. Images: PNG, JPEG, WebP, TIFF, BMP (detected by content). Request body limit ${opts.maxBodyMb} MB; at most ${opts.maxFiles} images per batch. Errors: {"error": {"code", "message"}}.`,
    },
    ...(opts.auth
      ? {
          security: [{ bearer: [] }],
          components: { securitySchemes: { bearer: { type: 'http' as const, scheme: 'bearer' } } },
        }
      : {}),
  };
}

export interface BuiltServer {
  app: FastifyInstance;
  metrics: ServeMetrics;
  /**
   * Serves `next` for its category from now on (requests already queued finish on the old model);
   * returns the predictor it replaced. `scorer`: the new model's own (default: the server's).
   */
  replaceModel(next: ServedModel, scorer?: Scorer): ModelPredictor | undefined;
}

export async function buildServer(opts: ServeOptions): Promise<BuiltServer> {
  const maxBodyMb = opts.maxBodyMb ?? 10;
  const maxBodyBytes = Math.round(maxBodyMb * 2 ** 20);
  const maxFiles = opts.maxFiles ?? 16;
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const token = opts.token || null;
  const scorer = opts.scorer ?? (await loadDefaultScorer());
  const models = new Map(
    opts.models.map((m) => [m.category, new ModelPredictor(m, scorer, { maxPending: opts.maxQueue })]),
  );
  const metrics = createMetrics();
  const limitsCtx = { maxBodyMb, maxFiles };
  let shuttingDown = false;
  const ctx: ServeContext = {
    served: opts.models,
    models,
    metrics,
    limits: { maxBodyMb, maxBodyBytes, maxFiles, maxPixels },
    auth: token !== null,
    isShuttingDown: () => shuttingDown,
    engineInfo: opts.engineInfo,
  };

  const app = Fastify({
    bodyLimit: maxBodyBytes,
    ...(typeof opts.logger === 'object' ? { loggerInstance: opts.logger } : { logger: opts.logger ?? false }),
  });
  const { onRoute } = opts;
  if (onRoute) app.addHook('onRoute', (route) => onRoute(route));
  app.setValidatorCompiler(validatorCompiler);
  // Response schemas document; the answer is sent as the handler built it (never cut to its schema).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await app.register(swagger, {
    openapi: openapiInfo({ maxBodyMb, maxFiles, auth: ctx.auth }),
    transform,
    transformObject: (doc) => withoutUnusedSchemas(zodTransformObject(doc) as OpenApiDoc) as never,
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

  await app.register(authPlugin, { token });
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

  await app.register(predictPlugin, ctx);
  await app.register(opsPlugin, ctx);
  // Web page (its file routes are not part of the API document: @fastify/static hides them).
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', index: 'index.html', wildcard: false });
  await app.register(reportsPlugin, ctx);

  const replaceModel = (next: ServedModel, nextScorer?: Scorer): ModelPredictor | undefined => {
    const old = models.get(next.category);
    models.set(next.category, new ModelPredictor(next, nextScorer ?? scorer, { maxPending: opts.maxQueue }));
    const i = ctx.served.findIndex((m) => m.category === next.category);
    if (i >= 0) ctx.served[i] = next;
    else ctx.served.push(next);
    return old;
  };
  return { app, metrics, replaceModel };
}

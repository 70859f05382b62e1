/**
 * The HTTP API's shapes as zod schemas: the routes declare them (lib/serve/routes/*), and the
 * OpenAPI document at /openapi.json is generated from those declarations (@fastify/swagger +
 * fastify-type-provider-zod). The JSON predict bodies are validated with these same schemas by
 * request-images (the route also takes multipart/form-data, which no schema can check before the
 * parts are streamed, so that route validates its body itself; the multipart body is described by
 * hand below). Responses are documented, not enforced: the server serialises them as they are.
 */
import { z } from 'zod';
import { API_ERROR_CODES } from './api-error';

/** Named schemas of the document (components/schemas); a registry of its own, never zod's global one. */
export const apiSchemas = z.registry<{ id?: string; description?: string }>();
const named = <T extends z.ZodType>(id: string, schema: T, description?: string): T => {
  apiSchemas.add(schema, { id, ...(description ? { description } : {}) });
  return schema;
};
/** A description in the document (zod's `.meta()` would go to its global registry, which is not read). */
const described = <T extends z.ZodType>(schema: T, description: string): T => {
  apiSchemas.add(schema, { description });
  return schema;
};

// ---------- requests ----------

export const jsonImage = z.union([z.string(), z.object({ name: z.string().optional(), data: z.string() })], {
  error: 'must be a base64 string, a data URI, or {"name": ..., "data": <base64>}',
});
export const jsonSingle = z.object({ category: z.string().optional(), image: jsonImage.optional() });
export const jsonBatch = z.object({ category: z.string().optional(), images: z.array(jsonImage).optional() });

/** `?heatmap=false` (or 0) leaves the PNGs out; any other value keeps them. */
export const predictQuery = z.looseObject({
  heatmap: described(
    z.string(),
    'false or 0: omit the heatmap and mask PNGs (faster, smaller responses)',
  ).optional(),
});

const categoryField = {
  type: 'string',
  description: 'Model category (GET /v1/models); optional when only one model is loaded',
};
const jsonImageDoc = {
  oneOf: [
    { type: 'string', description: 'base64 or data:image/...;base64,... URI' },
    {
      type: 'object',
      required: ['data'],
      properties: { name: { type: 'string' }, data: { type: 'string', description: 'base64 or data URI' } },
    },
  ],
};

/** The request bodies of the predict routes, per content type (OpenAPI `requestBody.content`). */
export const predictBody = {
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        required: ['image'],
        properties: { image: { type: 'string', format: 'binary' }, category: categoryField },
      },
    },
    'application/json': {
      schema: {
        type: 'object',
        required: ['image'],
        properties: { image: jsonImageDoc, category: categoryField },
      },
    },
  },
};
export const batchBody = {
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        required: ['images'],
        properties: {
          images: { type: 'array', items: { type: 'string', format: 'binary' } },
          category: categoryField,
        },
      },
    },
    'application/json': {
      schema: {
        type: 'object',
        required: ['images'],
        properties: { images: { type: 'array', items: jsonImageDoc }, category: categoryField },
      },
    },
  },
};

// ---------- responses ----------

const errorDetail = z.object({ code: z.enum(API_ERROR_CODES), message: z.string() });
export const errorBody = named(
  'Error',
  z.object({ error: errorDetail }),
  'Error: {"error": {"code", "message"}}',
);

export const imageResult = named(
  'ImageResult',
  z.object({
    name: z.string(),
    score: described(z.number(), 'Raw anomaly score (units of threshold)'),
    normalisedScore: described(z.number().min(0).max(1), '0.5 = decision threshold'),
    threshold: z.number(),
    verdict: z.enum(['defective', 'good']),
    defectArea: described(z.number(), 'Fraction of pixels above the pixel threshold'),
    image: z.object({ format: z.string(), width: z.int(), height: z.int() }),
    heatmap: described(z.string(), 'data:image/png;base64 heatmap (model resolution)').optional(),
    mask: described(z.string(), 'data:image/png;base64 predicted defect mask').optional(),
  }),
);

const timings = named(
  'Timings',
  z.object({ decodeMs: z.number(), inferenceMs: z.number(), totalMs: z.number() }),
);
const modelRef = z.object({ pipeline: z.string(), runId: z.string() });

export const predictResponse = named(
  'PredictResponse',
  imageResult.extend({ category: z.string(), model: modelRef, timings }),
  'Prediction',
);
export const batchResponse = named(
  'BatchResponse',
  z.object({
    category: z.string(),
    model: modelRef,
    results: z.array(imageResult),
    failed: z.array(z.object({ name: z.string(), error: errorDetail })),
    timings,
  }),
  'Predictions; undecodable images are listed in `failed`',
);

export const modelInfo = named(
  'Model',
  z.object({
    category: z.string(),
    pipeline: z.string(),
    runId: z.string(),
    createdAt: z.string(),
    imageSize: z.int(),
    architecture: z.record(z.string(), z.unknown()),
    calibration: z.object({ imageThreshold: z.number(), pixelThreshold: z.number(), strategy: z.string() }),
    metrics: z.record(z.string(), z.unknown()).nullable(),
    reports: described(z.string(), "URL of the run's reports, if its folder is loaded").nullable(),
  }),
);
export const modelsResponse = z.object({ models: z.array(modelInfo) });

export const healthResponse = z.object({
  status: z.literal('ok'),
  /** What scores requests: engine, execution provider, threads, and any fallback reason. */
  engine: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
});
export const readyResponse = z.object({
  status: z.enum(['ready', 'not ready']),
  models: z.array(z.object({ category: z.string(), queueDepth: z.int() })),
});

/** A response entry: its description and its JSON body's schema. */
export const json = <T extends z.ZodType>(description: string, schema: T) => ({
  description,
  content: { 'application/json': { schema } },
});

/** The 4xx/5xx answers of a route that takes images (401 only when the server wants a token). */
export function imageRouteErrors(auth: boolean) {
  const error = json('Client error', errorBody);
  return {
    400: error,
    ...(auth ? { 401: error } : {}),
    404: error,
    413: error,
    415: error,
    422: error,
    503: json('Busy: the model queue is full (retry)', errorBody),
  };
}

/**
 * The OpenAPI 3.1 description of the HTTP API, served at /openapi.json. Hand-written (the routes are few
 * and multipart is poorly generated from schemas); test/serve.test.ts checks that every route is here.
 */
export function buildOpenApi(opts: { maxBodyMb: number; maxFiles: number; auth: boolean }) {
  const error = { $ref: '#/components/responses/Error' };
  const errors = {
    '400': error,
    ...(opts.auth ? { '401': error } : {}),
    '404': error,
    '413': error,
    '415': error,
    '422': error,
    '503': error,
  };
  const security = opts.auth ? [{ bearer: [] }] : [];
  const jsonImage = {
    oneOf: [
      { type: 'string', description: 'base64 or data:image/...;base64,... URI' },
      {
        type: 'object',
        required: ['data'],
        properties: { name: { type: 'string' }, data: { type: 'string', description: 'base64 or data URI' } },
      },
    ],
  };
  const heatmapParam = {
    name: 'heatmap',
    in: 'query',
    required: false,
    description: 'false: omit the heatmap and mask PNGs (faster, smaller responses)',
    schema: { type: 'boolean', default: true },
  };
  const categoryField = {
    type: 'string',
    description: 'Model category (GET /v1/models); optional when only one model is loaded',
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Anomaly Spotter',
      version: '1',
      description: `Visual anomaly detection per product category. Images: PNG, JPEG, WebP, TIFF, BMP (detected by content). Request body limit ${opts.maxBodyMb} MB; at most ${opts.maxFiles} images per batch. Errors: {"error": {"code", "message"}}.`,
    },
    ...(opts.auth ? { security } : {}),
    paths: {
      '/v1/predict': {
        post: {
          summary: 'Score one image',
          parameters: [heatmapParam],
          requestBody: {
            required: true,
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
                  properties: { image: jsonImage, category: categoryField },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'Prediction',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/PredictResponse' } } },
            },
            ...errors,
          },
        },
      },
      '/v1/predict/batch': {
        post: {
          summary: 'Score several images with one model; undecodable images are listed in `failed`',
          parameters: [heatmapParam],
          requestBody: {
            required: true,
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
                  properties: { images: { type: 'array', items: jsonImage }, category: categoryField },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'Predictions',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/BatchResponse' } } },
            },
            ...errors,
          },
        },
      },
      '/v1/models': {
        get: {
          summary: 'Loaded models',
          responses: {
            '200': { description: 'Models', content: { 'application/json': { schema: { type: 'object' } } } },
          },
        },
      },
      '/healthz': {
        get: {
          summary:
            'Liveness; `engine`: what scores requests (engine, ONNX Runtime execution provider, threads, fallbacks)',
          security: [],
          responses: { '200': { description: 'Alive' } },
        },
      },
      '/readyz': {
        get: {
          summary: 'Readiness (models loaded, not shutting down)',
          security: [],
          responses: { '200': { description: 'Ready' }, '503': { description: 'Not ready' } },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics',
          responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': {} } } },
        },
      },
      '/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI' } } },
      },
    },
    components: {
      ...(opts.auth ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
      responses: {
        Error: {
          description: 'Client error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: {
                  type: 'string',
                  enum: [
                    'BAD_REQUEST',
                    'BAD_JSON',
                    'MISSING_FIELD',
                    'NOT_AN_IMAGE',
                    'CORRUPT_IMAGE',
                    'IMAGE_TOO_LARGE',
                    'BODY_TOO_LARGE',
                    'TOO_MANY_FILES',
                    'UNSUPPORTED_MEDIA_TYPE',
                    'UNKNOWN_CATEGORY',
                    'UNAUTHORIZED',
                    'NOT_FOUND',
                    'BUSY',
                    'INTERNAL',
                  ],
                },
                message: { type: 'string' },
              },
            },
          },
        },
        ImageResult: {
          type: 'object',
          required: ['name', 'score', 'normalisedScore', 'threshold', 'verdict'],
          properties: {
            name: { type: 'string' },
            score: { type: 'number', description: 'Raw anomaly score (units of threshold)' },
            normalisedScore: {
              type: 'number',
              minimum: 0,
              maximum: 1,
              description: '0.5 = decision threshold',
            },
            threshold: { type: 'number' },
            verdict: { type: 'string', enum: ['defective', 'good'] },
            defectArea: { type: 'number', description: 'Fraction of pixels above the pixel threshold' },
            image: {
              type: 'object',
              properties: {
                format: { type: 'string' },
                width: { type: 'integer' },
                height: { type: 'integer' },
              },
            },
            heatmap: { type: 'string', description: 'data:image/png;base64 heatmap (model resolution)' },
            mask: { type: 'string', description: 'data:image/png;base64 predicted defect mask' },
          },
        },
        Timings: {
          type: 'object',
          properties: {
            decodeMs: { type: 'number' },
            inferenceMs: { type: 'number' },
            totalMs: { type: 'number' },
          },
        },
        PredictResponse: {
          allOf: [
            { $ref: '#/components/schemas/ImageResult' },
            {
              type: 'object',
              properties: {
                category: { type: 'string' },
                model: {
                  type: 'object',
                  properties: { pipeline: { type: 'string' }, runId: { type: 'string' } },
                },
                timings: { $ref: '#/components/schemas/Timings' },
              },
            },
          ],
        },
        BatchResponse: {
          type: 'object',
          properties: {
            category: { type: 'string' },
            model: { type: 'object' },
            results: { type: 'array', items: { $ref: '#/components/schemas/ImageResult' } },
            failed: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  name: { type: 'string' },
                  error: { $ref: '#/components/schemas/Error/properties/error' },
                },
              },
            },
            timings: { $ref: '#/components/schemas/Timings' },
          },
        },
      },
    },
  };
}

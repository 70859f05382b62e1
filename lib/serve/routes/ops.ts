/** GET /healthz, /readyz, /metrics and /openapi.json (the document @fastify/swagger builds from the routes). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { healthResponse, json, readyResponse } from '../schemas';
import type { ServeContext } from './context';

export async function opsPlugin(app: FastifyInstance, ctx: ServeContext): Promise<void> {
  const { models, metrics } = ctx;
  app.get(
    '/healthz',
    { schema: { summary: 'Liveness', security: [], response: { 200: json('Alive', healthResponse) } } },
    async () => ({ status: 'ok' as const, ...(ctx.engineInfo ? { engine: ctx.engineInfo } : {}) }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness (models loaded, not shutting down)',
        security: [],
        response: { 200: json('Ready', readyResponse), 503: json('Not ready', readyResponse) },
      },
    },
    async (_req, reply) => {
      const ready = !ctx.isShuttingDown() && models.size > 0;
      const body = {
        status: ready ? 'ready' : 'not ready',
        models: [...models.values()].map((p) => ({ category: p.served.category, queueDepth: p.queue.depth })),
      };
      return reply.status(ready ? 200 : 503).send(body);
    },
  );
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        response: {
          200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } },
        },
      },
    },
    async (_req, reply) => {
      for (const p of models.values()) metrics.queueDepth.set({ category: p.served.category }, p.queue.depth);
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );
  app.get(
    '/openapi.json',
    {
      schema: {
        summary: 'This document',
        security: [],
        response: { 200: json('OpenAPI 3.1', z.record(z.string(), z.unknown())) },
      },
    },
    async () => app.swagger(),
  );
}

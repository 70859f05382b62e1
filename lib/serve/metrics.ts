/**
 * Prometheus metrics of the server. A registry per server instance (not prom-client's global one), so
 * several servers in one process (tests, benchmarks) do not collide.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface ServeMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  requestSeconds: Histogram<'route'>;
  imageSeconds: Histogram<'category'>;
  images: Counter<'category' | 'verdict'>;
  errors: Counter<'code'>;
  queueDepth: Gauge<'category'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): ServeMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'anomaly_spotter_' });
  // Buckets around the 100 ms per-image target.
  const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    registry,
    requests: new Counter({
      name: 'anomaly_spotter_http_requests_total',
      help: 'HTTP requests by method, route and status code',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'anomaly_spotter_http_request_duration_seconds',
      help: 'HTTP request duration (whole request, including decoding and PNG encoding)',
      labelNames: ['route'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    imageSeconds: new Histogram({
      name: 'anomaly_spotter_inference_seconds_per_image',
      help: 'Model inference time per image (queue wait included), by category',
      labelNames: ['category'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    images: new Counter({
      name: 'anomaly_spotter_images_total',
      help: 'Images scored, by category and verdict',
      labelNames: ['category', 'verdict'] as const,
      registers: [registry],
    }),
    errors: new Counter({
      name: 'anomaly_spotter_errors_total',
      help: 'Error responses by error code',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'anomaly_spotter_queue_depth',
      help: 'Inference requests queued or running, by category',
      labelNames: ['category'] as const,
      registers: [registry],
    }),
  };
}

/**
 * Load generator of `npm run bench:serve`. bench/serve.ts forks this file, so that the client's own CPU
 * work (FormData, fetch, JSON parsing of responses with base64 PNGs) does not run on the server's event
 * loop; `--same-process-client` imports runPhases instead, to show what sharing the loop costs.
 * Protocol (IPC): the parent sends one ClientJob, the child answers with one PhaseResult per phase.
 */
import { readFile } from 'node:fs/promises';

export interface PhaseSpec {
  name: string;
  /** Path and query, e.g. '/v1/predict?heatmap=false'. */
  path: string;
  /** Images per request: 1 sends field `image`, more send repeated `images` fields. */
  imagesPerRequest: number;
  requests: number;
  concurrency: number;
}

export interface ClientJob {
  baseUrl: string;
  category: string;
  /** The PNG every request uploads (a file, so the job message stays small). */
  pngPath: string;
  phases: PhaseSpec[];
}

export interface Quantiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface PhaseResult {
  phase: string;
  requests: number;
  images: number;
  concurrency: number;
  wallS: number;
  /** Client-side request latency divided by images per request. */
  perImageMs: Quantiles & { mean: number };
  /**
   * Server-reported `timings` per image (request time / images per request); afterModelMs is
   * total - decode - inference of each request: heatmap/mask PNGs, metrics, building the result.
   */
  server: { decodeMs: Quantiles; inferenceMs: Quantiles; totalMs: Quantiles; afterModelMs: Quantiles };
  imagesPerSec: number;
  failures: number;
}

interface ServerTimings {
  decodeMs: number;
  inferenceMs: number;
  totalMs: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

function quantiles(values: number[]): Quantiles {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99) };
}

async function runPhase(job: ClientJob, blob: Blob, spec: PhaseSpec): Promise<PhaseResult> {
  const url = `${job.baseUrl}${spec.path}`;
  const k = spec.imagesPerRequest;
  const body = () => {
    const f = new FormData();
    f.append('category', job.category);
    if (k === 1) f.append('image', blob, 'bench.png');
    else for (let i = 0; i < k; i++) f.append('images', blob, `bench-${i}.png`);
    return f;
  };
  const latencies: number[] = [];
  const timings: ServerTimings[] = [];
  let failures = 0;
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < spec.requests) {
      next++;
      const start = performance.now();
      const res = await fetch(url, { method: 'POST', body: body() });
      const json = (await res.json()) as { timings?: ServerTimings };
      const ms = performance.now() - start;
      if (!res.ok) {
        failures++;
        continue;
      }
      latencies.push(ms / k);
      if (json.timings) timings.push(json.timings);
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, client));
  const wallS = (performance.now() - t0) / 1000;
  const per = (ms: (t: ServerTimings) => number) => quantiles(timings.map((t) => ms(t) / k));
  return {
    phase: spec.name,
    requests: spec.requests,
    images: latencies.length * k,
    concurrency: spec.concurrency,
    wallS,
    perImageMs: {
      ...quantiles(latencies),
      mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    },
    server: {
      decodeMs: per((t) => t.decodeMs),
      inferenceMs: per((t) => t.inferenceMs),
      totalMs: per((t) => t.totalMs),
      afterModelMs: per((t) => t.totalMs - t.decodeMs - t.inferenceMs),
    },
    imagesPerSec: (latencies.length * k) / wallS,
    failures,
  };
}

/** Runs the phases one after the other; `onResult` sees each as it finishes. */
export async function runPhases(
  job: ClientJob,
  onResult: (r: PhaseResult) => void = () => {},
): Promise<PhaseResult[]> {
  const png = await readFile(job.pngPath);
  const blob = new Blob([new Uint8Array(png)], { type: 'image/png' });
  const out: PhaseResult[] = [];
  for (const spec of job.phases) {
    const r = await runPhase(job, blob, spec);
    onResult(r);
    out.push(r);
  }
  return out;
}

// Forked by bench/serve.ts: one job in, one message per phase out, then exit.
if (process.send && process.argv.includes('--bench-serve-client')) {
  process.once('message', (job: ClientJob) => {
    runPhases(job, (r) => process.send?.({ type: 'phase', result: r }))
      .then(() => process.send?.({ type: 'done' }, () => process.exit(0)))
      .catch((err: unknown) => {
        process.send?.({ type: 'error', message: (err as Error).stack ?? String(err) }, () =>
          process.exit(1),
        );
      });
  });
}

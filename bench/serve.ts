/**
 * `npm run bench:serve [-- --model <package dir> --requests 100 --concurrency 4]`
 * Serving latency against the 100 ms per-image target: starts the real server on loopback, sends
 * multipart requests over HTTP with bounded concurrency, and prints p50/p95/p99 and throughput for
 *   1. one image per request, one client at a time (pure latency),
 *   2. one image per request, --concurrency clients (throughput; requests queue per model),
 *   3. --batch images per /v1/predict/batch request, one client (per-image cost when batching).
 * Without --model it exports a random-init package at 128 px with the reference widths (speed does not
 * depend on the weights).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command, Option } from 'commander';
import sharp from 'sharp';
import { anomalyMapSchema, defaultTrainingConfig } from '../lib/config/schema';
import { type BackendPreference, selectBackend } from '../lib/model/backend';
import { saveModel } from '../lib/model/io';
import { exportModelPackage, writeCalibration } from '../lib/model/package';
import { buildUNetLite } from '../lib/model/unet';
import { createEngineScorer, INFERENCE_ENGINES, type InferenceEngine } from '../lib/serve/engine';
import { loadDefaultScorer } from '../lib/serve/predictor';
import { startServer } from '../lib/serve/start';
import { positiveInt } from '../lib/util/cli-args';

const opts = new Command('bench:serve')
  .description('Serving latency benchmark (HTTP, loopback)')
  .option('--model <dir>', 'model package to serve (default: random-init 128 px, widths 16,32,64,128)')
  .option('--image-size <px>', 'model size when no --model is given', positiveInt, 128)
  .option(
    '--input-size <px>',
    'side of the uploaded PNG (decoding and resizing are part of the latency)',
    positiveInt,
    512,
  )
  .option('--requests <n>', 'requests per phase', positiveInt, 100)
  .option('--concurrency <n>', 'parallel clients in phase 2', positiveInt, 4)
  .option('--batch <n>', 'images per request in phase 3', positiveInt, 8)
  .option('--no-heatmap', 'ask for scores only (no heatmap/mask PNGs in responses)')
  .addOption(
    new Option('--engine <name>', 'model forward pass (as npm run serve)')
      .choices([...INFERENCE_ENGINES])
      .default('auto'),
  )
  .addOption(
    new Option('--backend <name>', 'tfjs backend')
      .choices(['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu'])
      .default('auto'),
  )
  .parse()
  .opts<{
    model?: string;
    imageSize: number;
    inputSize: number;
    requests: number;
    concurrency: number;
    batch: number;
    heatmap: boolean;
    backend: BackendPreference;
    engine: InferenceEngine;
  }>();

const TARGET_MS = 100;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

async function randomPackage(dir: string, size: number): Promise<string> {
  const widths = [16, 32, 64, 128];
  const model = buildUNetLite({ imageSize: size, widths, seed: 1 });
  await saveModel(model, join(dir, 'model'));
  model.dispose();
  const config = { ...defaultTrainingConfig(), image_size: size, model: { widths } };
  const packageDir = join(dir, 'package');
  await exportModelPackage({
    modelDir: join(dir, 'model'),
    packageDir,
    category: 'bench',
    pipeline: 'bench',
    runId: 'random-init',
    config,
    training: { note: 'random init for benchmarking' },
  });
  await writeCalibration(packageDir, {
    imageThreshold: 0.5,
    pixelThreshold: 0.3,
    scoreNorm: { min: 0, max: 1 },
    strategy: 'manual',
    anomalyMap: anomalyMapSchema.parse({}),
    imageSize: size,
  });
  return packageDir;
}

interface PhaseResult {
  phase: string;
  requests: number;
  images: number;
  concurrency: number;
  wallS: number;
  /** Client-side request latency divided by images per request. */
  perImageMs: { p50: number; p95: number; p99: number; mean: number };
  /** Server-reported model time per image (queue wait included). */
  inferencePerImageMs: { p50: number; p95: number };
  imagesPerSec: number;
  failures: number;
}

async function phase(
  name: string,
  url: string,
  body: () => FormData,
  imagesPerRequest: number,
  requests: number,
  concurrency: number,
): Promise<PhaseResult> {
  const latencies: number[] = [];
  const inference: number[] = [];
  let failures = 0;
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < requests) {
      next++;
      const start = performance.now();
      const res = await fetch(url, { method: 'POST', body: body() });
      const json = (await res.json()) as { timings?: { inferenceMs: number } };
      const ms = performance.now() - start;
      if (!res.ok) {
        failures++;
        continue;
      }
      latencies.push(ms / imagesPerRequest);
      if (json.timings) inference.push(json.timings.inferenceMs / imagesPerRequest);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const wallS = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  inference.sort((a, b) => a - b);
  return {
    phase: name,
    requests,
    images: latencies.length * imagesPerRequest,
    concurrency,
    wallS,
    perImageMs: {
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      p99: percentile(latencies, 99),
      mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    },
    inferencePerImageMs: { p50: percentile(inference, 50), p95: percentile(inference, 95) },
    imagesPerSec: (latencies.length * imagesPerRequest) / wallS,
    failures,
  };
}

async function main(): Promise<void> {
  const backend = await selectBackend(opts.backend, 'infer');
  const tmp = await mkdtemp(join(tmpdir(), 'bench-serve-'));
  try {
    const modelPath = opts.model ?? (await randomPackage(tmp, opts.imageSize));
    const server = await startServer({
      models: modelPath,
      port: 0,
      logger: false,
      maxFiles: Math.max(16, opts.batch),
      engine: opts.engine,
    });
    const m = server.models[0];
    const png = await sharp({
      create: {
        width: opts.inputSize,
        height: opts.inputSize,
        channels: 3,
        background: '#808080',
        noise: { type: 'gaussian', mean: 128, sigma: 30 },
      },
    })
      .png()
      .toBuffer();
    const blob = new Blob([new Uint8Array(png)], { type: 'image/png' });
    const single = () => {
      const f = new FormData();
      f.append('category', m.category);
      f.append('image', blob, 'bench.png');
      return f;
    };
    const batch = () => {
      const f = new FormData();
      f.append('category', m.category);
      for (let i = 0; i < opts.batch; i++) f.append('images', blob, `bench-${i}.png`);
      return f;
    };
    const q = opts.heatmap ? '' : '?heatmap=false';
    // Reference without HTTP: the model + anomaly map alone (lib/eval scoreImages), batch 1 and --batch,
    // so the serving overhead can be read off one run even on a busy machine (compare ratios, not times).
    const engineScorer = await createEngineScorer(server.engine.name, server.models);
    const scorer = engineScorer.scorer ?? (await loadDefaultScorer());
    const size0 = m.pkg.preprocess.imageSize;
    const inProcess = async (b: number) => {
      const x = new Float32Array(b * size0 * size0 * 3).fill(0.5);
      await scorer(m.pkg.model, x, b, size0, m.pkg.calibration.anomalyMap, b);
      const times: number[] = [];
      for (let i = 0; i < Math.max(3, Math.ceil(opts.requests / 4 / b)); i++) {
        const t = performance.now();
        await scorer(m.pkg.model, x, b, size0, m.pkg.calibration.anomalyMap, b);
        times.push((performance.now() - t) / b);
      }
      times.sort((a, c) => a - c);
      return { p50: percentile(times, 50), p95: percentile(times, 95) };
    };
    const ref1 = await inProcess(1);
    const refB = await inProcess(opts.batch);
    // Warm-up: first calls compile wasm kernels and allocate.
    await phase('warmup', `${server.url}/v1/predict${q}`, single, 1, 5, 1);
    const results = [
      await phase('single, 1 client', `${server.url}/v1/predict${q}`, single, 1, opts.requests, 1),
      await phase(
        `single, ${opts.concurrency} clients`,
        `${server.url}/v1/predict${q}`,
        single,
        1,
        opts.requests,
        opts.concurrency,
      ),
      await phase(
        `batch of ${opts.batch}, 1 client`,
        `${server.url}/v1/predict/batch${q}`,
        batch,
        opts.batch,
        Math.max(1, Math.ceil(opts.requests / opts.batch)),
        1,
      ),
    ];
    await server.app.close();
    await engineScorer.release();

    const f = (v: number) => v.toFixed(1);
    const size = m.pkg.preprocess.imageSize;
    const lines = [
      `model: ${m.category}/${m.pkg.metadata.runId}, ${size}x${size}, widths ${m.pkg.metadata.architecture.widths.join(',')}; ` +
        `engine ${server.engine.name}${server.engine.fallbackReason ? ` (onnx unavailable: ${server.engine.fallbackReason})` : ''}; ` +
        `backend ${backend.name} (${backend.reason}); input PNG ${opts.inputSize}x${opts.inputSize}; ` +
        `heatmaps ${opts.heatmap ? 'on' : 'off'}; node ${process.version}, tfjs ${tf.version.tfjs}`,
      '',
      '| phase | images | per-image p50 ms | p95 ms | p99 ms | model ms/img p50 | img/s | p95 <= 100 ms |',
      '|---|---|---|---|---|---|---|---|',
      ...results.map(
        (r) =>
          `| ${r.phase} | ${r.images}${r.failures ? ` (${r.failures} failed)` : ''} | ${f(r.perImageMs.p50)} | ${f(r.perImageMs.p95)} | ${f(r.perImageMs.p99)} | ${f(r.inferencePerImageMs.p50)} | ${f(r.imagesPerSec)} | ${r.perImageMs.p95 <= TARGET_MS ? 'yes' : 'NO'} |`,
      ),
      `| in-process scoreImages, batch 1 (no HTTP) | - | ${f(ref1.p50)} | ${f(ref1.p95)} | - | ${f(ref1.p50)} | ${f(1000 / ref1.p50)} | ${ref1.p95 <= TARGET_MS ? 'yes' : 'NO'} |`,
      `| in-process scoreImages, batch ${opts.batch} (no HTTP) | - | ${f(refB.p50)} | ${f(refB.p95)} | - | ${f(refB.p50)} | ${f(1000 / refB.p50)} | ${refB.p95 <= TARGET_MS ? 'yes' : 'NO'} |`,
      '',
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(', ')} on ${cpus().length} CPUs`,
      'per-image = client-side request latency / images per request (HTTP, multipart, decode, inference, PNG encoding);',
      'with several clients it includes waiting in the per-model queue (one batch at a time per model; the ONNX engine uses every core for it).',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:serve failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

/**
 * `npm run bench:serve [-- --model <package dir> --requests 100 --concurrency 4]`
 * Serving latency against the 100 ms per-image target: starts the real server on loopback, sends
 * multipart requests over HTTP with bounded concurrency from a separate client process
 * (bench/serve-client.ts), and prints client-side p50/p95/p99, the server-reported timings (decode,
 * inference, total) and throughput for
 *   1. one image per request, one client at a time (pure latency),
 *   2. one image per request, --concurrency clients (throughput; requests queue per model),
 *   3. --batch images per /v1/predict/batch request, one client (per-image cost when batching).
 * Without --model it exports a random-init package at 128 px with the reference widths (speed does not
 * depend on the weights). `--same-process-client` runs the client on the server's event loop instead
 * (how this benchmark worked before; its client-side numbers include the client's own work).
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command, Option } from 'commander';
import sharp from 'sharp';
import { anomalyMapSchema, defaultTrainingConfig } from '../lib/config/schema';
import { type BackendPreference, selectBackend } from '../lib/model/backend';
import { saveModel } from '../lib/model/io';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { describeArchitecture, exportModelPackage, sealPackage } from '../lib/package/package';
import { createEngineScorer, INFERENCE_ENGINES, type InferenceEngine } from '../lib/serve/engine';
import { loadDefaultScorer } from '../lib/serve/predictor';
import { startServer } from '../lib/serve/start';
import { positiveInt } from '../lib/util/cli-args';
import { type ClientJob, type PhaseResult, percentile, runPhases } from './serve-client';

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
  .option(
    '--same-process-client',
    "run the load generator on the server's event loop (the old setup) instead of a child process",
  )
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
    sameProcessClient?: boolean;
    backend: BackendPreference;
    engine: InferenceEngine;
  }>();

const TARGET_MS = 100;

async function randomPackage(dir: string, size: number): Promise<string> {
  const widths = [16, 32, 64, 128];
  const model = buildUNetLite({ imageSize: size, widths, seed: 1 });
  await saveModel(model, join(dir, 'model'));
  model.dispose();
  const config = { ...defaultTrainingConfig(), image_size: size, model: { widths } };
  const packageDir = join(dir, 'package');
  await exportModelPackage({
    modelDir: join(dir, 'model'),
    packageDir: join(dir, 'uncalibrated'),
    category: 'bench',
    pipeline: 'bench',
    runId: 'random-init',
    config,
    training: { note: 'random init for benchmarking' },
  });
  await sealPackage({
    fromDir: join(dir, 'uncalibrated'),
    packageDir,
    calibration: {
      imageThreshold: 0.5,
      pixelThreshold: 0.3,
      scoreNorm: { min: 0, max: 1 },
      strategy: 'manual',
      anomalyMap: anomalyMapSchema.parse({}),
      imageSize: size,
    },
  });
  return packageDir;
}

/** Runs the phases in a forked bench/serve-client.ts (or on this event loop with --same-process-client). */
async function runClient(job: ClientJob): Promise<PhaseResult[]> {
  if (opts.sameProcessClient) return runPhases(job);
  const child = fork(new URL('./serve-client.ts', import.meta.url), ['--bench-serve-client'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<PhaseResult[]>((resolve, reject) => {
    const results: PhaseResult[] = [];
    let settled = false;
    type Message =
      | { type: 'phase'; result: PhaseResult }
      | { type: 'done' }
      | { type: 'error'; message: string };
    child.on('message', (m: Message) => {
      if (m.type === 'phase') results.push(m.result);
      else if (m.type === 'done') {
        settled = true;
        resolve(results);
      } else {
        settled = true;
        reject(new Error(`client process: ${m.message}`));
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!settled) reject(new Error(`client process exited with code ${code} before finishing`));
    });
    child.send(job);
  });
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
    const pngPath = join(tmp, 'bench.png');
    await writeFile(pngPath, png);
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
    const single = `/v1/predict${q}`;
    const phases = await runClient({
      baseUrl: server.url,
      category: m.category,
      pngPath,
      phases: [
        // Warm-up (dropped): first calls allocate and warm the JIT on both sides.
        { name: 'warmup', path: single, imagesPerRequest: 1, requests: 5, concurrency: 1 },
        {
          name: 'single, 1 client',
          path: single,
          imagesPerRequest: 1,
          requests: opts.requests,
          concurrency: 1,
        },
        {
          name: `single, ${opts.concurrency} clients`,
          path: single,
          imagesPerRequest: 1,
          requests: opts.requests,
          concurrency: opts.concurrency,
        },
        {
          name: `batch of ${opts.batch}, 1 client`,
          path: `/v1/predict/batch${q}`,
          imagesPerRequest: opts.batch,
          requests: Math.max(1, Math.ceil(opts.requests / opts.batch)),
          concurrency: 1,
        },
      ],
    });
    const results = phases.slice(1);
    await server.app.close();
    await engineScorer.release();

    const f = (v: number) => v.toFixed(1);
    const pair = (q: { p50: number; p95: number }) => `${f(q.p50)} / ${f(q.p95)}`;
    const size = m.pkg.preprocess.imageSize;
    const lines = [
      `model: ${m.category}/${m.pkg.metadata.runId}, ${size}x${size}, ${describeArchitecture(m.pkg.metadata.architecture)}; ` +
        `engine ${server.engine.name}${server.engine.fallbackReason ? ` (onnx unavailable: ${server.engine.fallbackReason})` : ''}; ` +
        `backend ${backend.name} (${backend.reason}); input PNG ${opts.inputSize}x${opts.inputSize}; ` +
        `heatmaps ${opts.heatmap ? 'on' : 'off'}; node ${process.version}, tfjs ${tf.version.tfjs}`,
      '',
      '| phase | images | per-image p50 ms | p95 ms | p99 ms | server total p50 / p95 | decode p50 / p95 | model p50 / p95 | after model p50 / p95 | img/s | p95 <= 100 ms |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...results.map((r) => {
        const s = r.server;
        return `| ${r.phase} | ${r.images}${r.failures ? ` (${r.failures} failed)` : ''} | ${f(r.perImageMs.p50)} | ${f(r.perImageMs.p95)} | ${f(r.perImageMs.p99)} | ${pair(s.totalMs)} | ${pair(s.decodeMs)} | ${pair(s.inferenceMs)} | ${pair(s.afterModelMs)} | ${f(r.imagesPerSec)} | ${r.perImageMs.p95 <= TARGET_MS ? 'yes' : 'NO'} |`;
      }),
      `| in-process scoreImages, batch 1 (no HTTP) | - | ${f(ref1.p50)} | ${f(ref1.p95)} | - | - | - | ${pair(ref1)} | - | ${f(1000 / ref1.p50)} | ${ref1.p95 <= TARGET_MS ? 'yes' : 'NO'} |`,
      `| in-process scoreImages, batch ${opts.batch} (no HTTP) | - | ${f(refB.p50)} | ${f(refB.p95)} | - | - | - | ${pair(refB)} | - | ${f(1000 / refB.p50)} | ${refB.p95 <= TARGET_MS ? 'yes' : 'NO'} |`,
      '',
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(', ')} on ${cpus().length} CPUs`,
      `client: ${opts.sameProcessClient ? "on the server's event loop (--same-process-client)" : 'a separate process (same machine, so it still competes for the cores)'}`,
      'per-image = client-side request latency / images per request (HTTP, multipart, decode, inference, PNG encoding);',
      'with several clients it includes waiting in the per-model queue (one batch at a time per model; the ONNX engine uses every core for it).',
      "server columns = the response's timings / images per request: total = handler start to response object (body upload and",
      'multipart parsing included, JSON serialisation and sending not); decode = reading the upload + decoding and resizing;',
      'model = waiting for and running the inference batch; after model = total - decode - model of each request',
      '(heatmap/mask PNG encoding, metrics, building the result).',
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

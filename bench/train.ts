/**
 * `npm run bench:train [-- --steps 5 --repeat 3 --json out.json]`
 * Training and inference throughput of the reference configuration (128x128, batch 8, widths
 * 16,32,64,128, Adam 1e-4, MSE, no clipping: the peer's settings) on our training engines, against the
 * PyTorch peer (../shared/bench/torch_reference.py) run in the same invocation, plus the peak RSS of a
 * training process at batch 32 on the default engine.
 *
 * Engines: `onnx` (the default on CPU hosts: ONNX Runtime forward + backward) with 1 and with 2
 * threads, each compared with PyTorch at the same thread count; `tfjs` (wasm, single-threaded) once,
 * for reference. Rounds alternate ours/PyTorch `--repeat` times (shared machine: ratios are taken
 * within a round, then the median).
 */
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { type TrainingConfig, trainingConfigSchema } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import { createOnnxReconstructor } from '../lib/models/autoencoder/runner';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { createTrainEngine, type TrainEngine } from '../lib/train/engine';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer, TfjsTrainEngine } from '../lib/train/tfjs-train-engine';
import { median, runTorchPeer, type TorchPeerResult } from './torch-peer';

const program = new Command('bench:train')
  .option('--size <px>', 'image size', '128')
  .option('--batch <n>', 'batch size', '8')
  .option('--widths <list>', 'encoder widths', '16,32,64,128')
  .option('--steps <n>', 'timed steps per measurement', '5')
  .option('--repeat <n>', 'rounds alternating ours / PyTorch', '3')
  .option('--no-tfjs', 'skip the tfjs-wasm reference measurement (slow: ~3 s per step)')
  .option('--rss-batch <n>', 'batch size of the peak-RSS run (0: skip)', '32')
  .option('--torch-script <path>', 'PyTorch reference script', '../shared/bench/torch_reference.py')
  .option('--json <file>', 'also write the results as JSON')
  .option('--rss-child', 'internal: run the peak-RSS training process')
  .parse();
const o = program.opts<{
  size: string;
  batch: string;
  widths: string;
  steps: string;
  repeat: string;
  tfjs: boolean;
  rssBatch: string;
  torchScript: string;
  json?: string;
  rssChild?: boolean;
}>();
const size = Number(o.size);
const batch = Number(o.batch);
const widths = o.widths.split(',').map(Number);
const steps = Number(o.steps);

interface Ours {
  trainMsPerStep: number;
  /** mse + ssim + edge, with clipping: what the pipeline trains with. */
  fullLossMsPerStep: number;
  inferMsPerBatch: number;
}

const peerConfig = (b: number, threads: number): TrainingConfig =>
  trainingConfigSchema.parse({
    image_size: size,
    batch_size: b,
    model: { widths },
    optimizer: { name: 'adam', lr: 1e-4, weight_decay: 0 },
    grad_clip: null, // the peer does not clip
    loss: { mse: 1, ssim: 0, edge: 0, perceptual: 0 },
    threads,
  });

async function measureOurs(kind: 'onnx' | 'tfjs', threads: number, b: number, nSteps: number): Promise<Ours> {
  const cfg = peerConfig(b, threads);
  const fullCfg = { ...cfg, grad_clip: 1, loss: { ...cfg.loss, ssim: 0.5, edge: 0.2 } };
  const images = tf.tidy(
    () => tf.randomUniform([b, size, size, 3], 0, 1, 'float32', 1).dataSync() as Float32Array,
  );
  const timeSteps = async (c: TrainingConfig, n: number) => {
    const model = buildUNetLite({ imageSize: size, widths, seed: 0 });
    const opt = createOptimizer(c);
    const loss = await createLoss(c.loss, size);
    const engine: TrainEngine =
      kind === 'onnx'
        ? await OnnxTrainEngine.create(model, opt, loss, c, { threads })
        : new TfjsTrainEngine(model, opt, loss, c, 'tfjs');
    for (let i = 0; i < 2; i++) await engine.step(images, b, 1e-4); // warm-up (caches, heap growth)
    const t = performance.now();
    for (let i = 0; i < n; i++) await engine.step(images, b, 1e-4);
    const ms = (performance.now() - t) / n;
    await engine.syncToModel();
    await engine.release();
    opt.dispose();
    loss.dispose();
    return { ms, model };
  };
  const mse = await timeSteps(cfg, nSteps);
  const full = await timeSteps(fullCfg, Math.max(1, Math.floor(nSteps / 2)));
  full.model.dispose();

  // Inference: the engine serving uses for this kind (ONNX Runtime, or tfjs predict).
  const model = mse.model;
  let infer: () => Promise<void>;
  let release = async () => {};
  if (kind === 'onnx') {
    const r = await createOnnxReconstructor(model, { threads });
    infer = async () => {
      await r.reconstruct(images, b, size);
    };
    release = () => r.release();
  } else {
    const x = tf.tensor4d(images, [b, size, size, 3]);
    infer = async () => {
      const y = model.predict(x) as tf.Tensor;
      await y.data();
      y.dispose();
    };
    release = async () => x.dispose();
  }
  await infer();
  const t = performance.now();
  for (let i = 0; i < nSteps; i++) await infer();
  const inferMs = (performance.now() - t) / nSteps;
  await release();
  model.dispose();
  return {
    trainMsPerStep: mse.ms,
    fullLossMsPerStep: full.ms,
    inferMsPerBatch: inferMs,
  };
}

function runTorch(threads: number): TorchPeerResult | string {
  return runTorchPeer({ script: o.torchScript, threads, size, batch, widths, steps });
}

function peakRssRun(b: number): number | string {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      resolve(import.meta.dirname, 'train.ts'),
      '--rss-child',
      '--batch',
      String(b),
      '--size',
      String(size),
      '--widths',
      widths.join(','),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return `peak-RSS run failed: ${r.stderr.trim().split('\n').at(-1)}`;
  return Number(r.stdout.trim().split('\n').at(-1));
}

const imgPerSec = (b: number, ms: number) => +((b * 1000) / ms).toFixed(2);

async function main() {
  const info = await selectBackend('auto', 'train');
  if (o.rssChild) {
    // Two real training steps on the default engine (mse+ssim+edge, gradient clipping).
    const cfg = trainingConfigSchema.parse({
      image_size: size,
      batch_size: batch,
      model: { widths },
      loss: { perceptual: 0 },
    });
    const model = buildUNetLite({ imageSize: size, widths, seed: 0 });
    const optimizer = createOptimizer(cfg);
    const loss = await createLoss(cfg.loss, size);
    const { engine } = await createTrainEngine({ model, optimizer, loss, config: cfg, backend: info.name });
    const images = tf.tidy(() => tf.randomUniform([batch, size, size, 3]).dataSync() as Float32Array);
    for (let i = 0; i < 2; i++) await engine.step(images, batch, 1e-4);
    await engine.syncToModel();
    console.log(Math.round(process.resourceUsage().maxRSS / 1024)); // MiB
    return;
  }
  const cores = availableParallelism();
  console.log(`tfjs backend: ${info.name} (${info.reason}); simd ${info.simd}`);
  console.log(
    `${cores} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}; node ${process.version}`,
  );
  const threadCounts = cores >= 2 ? [1, 2] : [1];
  const rounds: { ours: Ours[]; torch: (TorchPeerResult | string)[] }[] = [];
  let tfjsRef: Ours | null = null;
  for (let i = 0; i < Number(o.repeat); i++) {
    const ours: Ours[] = [];
    const torch: (TorchPeerResult | string)[] = [];
    for (const threads of threadCounts) {
      ours.push(await measureOurs('onnx', threads, batch, steps));
      torch.push(runTorch(threads));
    }
    if (i === 0 && o.tfjs) tfjsRef = await measureOurs('tfjs', 1, batch, steps);
    rounds.push({ ours, torch });
    const line = threadCounts.map((th, j) => {
      const t = torch[j];
      const peer =
        typeof t === 'string' ? 'torch n/a' : `torch ${t.train_ms_per_step} / ${t.infer_ms_per_batch}`;
      return `${th} thread(s): onnx ${ours[j].trainMsPerStep.toFixed(0)} / ${ours[j].inferMsPerBatch.toFixed(0)}, ${peer}`;
    });
    console.log(`  round ${i + 1} (train ms/step / infer ms/batch): ${line.join('; ')}`);
  }
  if (tfjsRef)
    console.log(
      `  tfjs wasm (1 thread): train ${tfjsRef.trainMsPerStep.toFixed(0)} ms/step (full loss ${tfjsRef.fullLossMsPerStep.toFixed(0)}), infer ${tfjsRef.inferMsPerBatch.toFixed(0)} ms/batch`,
    );
  const rss = Number(o.rssBatch) > 0 ? peakRssRun(Number(o.rssBatch)) : 'skipped';

  const perThreads = threadCounts.map((threads, j) => {
    const ours = rounds.map((r) => r.ours[j]);
    const torch = rounds.map((r) => r.torch[j]).filter((t): t is TorchPeerResult => typeof t !== 'string');
    const problem = rounds.map((r) => r.torch[j]).find((t): t is string => typeof t === 'string') ?? null;
    const paired = rounds.filter((r) => typeof r.torch[j] !== 'string');
    const trainRatios = paired.map(
      (r) => (r.torch[j] as TorchPeerResult).train_ms_per_step / r.ours[j].trainMsPerStep,
    );
    const inferRatios = paired.map(
      (r) => (r.torch[j] as TorchPeerResult).infer_ms_per_batch / r.ours[j].inferMsPerBatch,
    );
    const trainMs = median(ours.map((r) => r.trainMsPerStep));
    const fullMs = median(ours.map((r) => r.fullLossMsPerStep));
    const inferMs = median(ours.map((r) => r.inferMsPerBatch));
    return {
      threads,
      ours: {
        engine: 'onnx',
        train_ms_per_step: Math.round(trainMs),
        train_img_per_s: imgPerSec(batch, trainMs),
        train_full_loss_ms_per_step: Math.round(fullMs),
        infer_ms_per_batch: Math.round(inferMs),
        infer_img_per_s: imgPerSec(batch, inferMs),
      },
      torch: torch.length
        ? {
            train_ms_per_step: median(torch.map((t) => t.train_ms_per_step)),
            train_img_per_s: median(torch.map((t) => t.train_img_per_s)),
            infer_ms_per_batch: median(torch.map((t) => t.infer_ms_per_batch)),
            infer_img_per_s: median(torch.map((t) => t.infer_img_per_s)),
          }
        : problem,
      ratio: trainRatios.length
        ? {
            train: +median(trainRatios).toFixed(3),
            infer: +median(inferRatios).toFixed(3),
            per_round_train: trainRatios.map((r) => +r.toFixed(3)),
            per_round_infer: inferRatios.map((r) => +r.toFixed(3)),
          }
        : null,
    };
  });
  const result = {
    config: { size, batch, widths, steps, repeat: Number(o.repeat) },
    backend: info,
    cpus: cores,
    load_average_end: loadavg(),
    per_threads: perThreads,
    tfjs_wasm_1_thread: tfjsRef
      ? {
          train_ms_per_step: Math.round(tfjsRef.trainMsPerStep),
          train_img_per_s: imgPerSec(batch, tfjsRef.trainMsPerStep),
          train_full_loss_ms_per_step: Math.round(tfjsRef.fullLossMsPerStep),
          infer_ms_per_batch: Math.round(tfjsRef.inferMsPerBatch),
          infer_img_per_s: imgPerSec(batch, tfjsRef.inferMsPerBatch),
        }
      : null,
    peak_rss_mib_train_batch: { batch: Number(o.rssBatch), rss },
  };
  const lines = [
    '',
    '| engine | threads | train img/s | train ms/step (full loss) | infer img/s | PyTorch train / infer img/s | ratio train | ratio infer |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const p of perThreads) {
    const t = typeof p.torch === 'string' || p.torch === null ? null : p.torch;
    lines.push(
      `| onnx (default) | ${p.threads} | ${p.ours.train_img_per_s} | ${p.ours.train_ms_per_step} (${p.ours.train_full_loss_ms_per_step}) | ${p.ours.infer_img_per_s} | ${t ? `${t.train_img_per_s} / ${t.infer_img_per_s}` : String(p.torch)} | ${p.ratio ? `**${p.ratio.train}x**` : '-'} | ${p.ratio ? `**${p.ratio.infer}x**` : '-'} |`,
    );
  }
  if (result.tfjs_wasm_1_thread) {
    const w = result.tfjs_wasm_1_thread;
    const t1 = perThreads[0].torch;
    const r = (ours: number, peer: number | undefined) => (peer ? `${(ours / peer).toFixed(3)}x` : '-');
    const peer = typeof t1 === 'string' || t1 === null ? undefined : t1;
    lines.push(
      `| tfjs wasm | 1 | ${w.train_img_per_s} | ${w.train_ms_per_step} (${w.train_full_loss_ms_per_step}) | ${w.infer_img_per_s} | same as above | ${r(w.train_img_per_s, peer?.train_img_per_s)} | ${r(w.infer_img_per_s, peer?.infer_img_per_s)} |`,
    );
  }
  lines.push('', 'ratio = ours / PyTorch at the same thread count, median over rounds (> 1: we are faster)');
  lines.push(
    `peak RSS, training process at batch ${o.rssBatch} (default engine, mse+ssim+edge): ${typeof rss === 'number' ? `${rss} MiB` : rss}`,
  );
  lines.push(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`,
  );
  console.log(lines.join('\n'));
  if (o.json) await writeFile(o.json, `${JSON.stringify(result, null, 2)}\n`);
}

await main();

/**
 * `npm run bench:train [-- --steps 5 --repeat 2 --json out.json]`
 * Training and inference throughput of the reference configuration (128x128, batch 8, widths
 * 16,32,64,128, Adam 1e-4, MSE) on our default backend, against the PyTorch peer
 * (../shared/bench/torch_reference.py) run in the same invocation, plus the peak RSS of a training
 * process at batch 32. Runs alternate ours/PyTorch `--repeat` times (the machine is shared: compare
 * ratios from the same run) and report medians.
 */
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { trainingConfigSchema } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/model/losses';
import { buildUNetLite } from '../lib/model/unet';
import { createOptimizer, trainOnBatch } from '../lib/train/trainer';
import { median, runTorchPeer, type TorchPeerResult } from './torch-peer';

const program = new Command('bench:train')
  .option('--size <px>', 'image size', '128')
  .option('--batch <n>', 'batch size', '8')
  .option('--widths <list>', 'encoder widths', '16,32,64,128')
  .option('--steps <n>', 'timed steps per measurement', '5')
  .option('--repeat <n>', 'alternating ours/PyTorch measurements', '2')
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
  trainImgPerSec: number;
  fullLossMsPerStep: number;
  inferMsPerBatch: number;
  inferImgPerSec: number;
}

async function measureOurs(b: number, nSteps: number): Promise<Ours> {
  const cfg = trainingConfigSchema.parse({
    image_size: size,
    batch_size: b,
    model: { widths },
    optimizer: { name: 'adam', lr: 1e-4, weight_decay: 0 },
    grad_clip: null, // the peer does not clip
    loss: { mse: 1, ssim: 0, edge: 0, perceptual: 0 },
  });
  const model = buildUNetLite({ imageSize: size, widths, seed: 0 });
  const opt = createOptimizer(cfg);
  const mse = await createLoss(cfg.loss, size);
  const full = await createLoss({ ...cfg.loss, ssim: 0.5, edge: 0.2 }, size);
  const x = tf.randomUniform([b, size, size, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const time = (n: number, f: () => void) => {
    const t = performance.now();
    for (let i = 0; i < n; i++) f();
    return (performance.now() - t) / n;
  };
  time(2, () => trainOnBatch(model, opt, mse, x, cfg, 1e-4)); // warm-up (operator caches, heap growth)
  const trainMs = time(nSteps, () => trainOnBatch(model, opt, mse, x, cfg, 1e-4));
  time(1, () => trainOnBatch(model, opt, full, x, cfg, 1e-4));
  const fullMs = time(Math.max(1, Math.floor(nSteps / 2)), () =>
    trainOnBatch(model, opt, full, x, cfg, 1e-4),
  );
  const infer = () => {
    const y = model.predict(x) as tf.Tensor;
    y.dataSync();
    y.dispose();
  };
  time(1, infer);
  const inferMs = time(nSteps, infer);
  tf.dispose([x]);
  model.dispose();
  opt.dispose();
  return {
    trainMsPerStep: trainMs,
    trainImgPerSec: (b * 1000) / trainMs,
    fullLossMsPerStep: fullMs,
    inferMsPerBatch: inferMs,
    inferImgPerSec: (b * 1000) / inferMs,
  };
}

type Torch = TorchPeerResult;

function runTorch(threads: number): Torch | string {
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

async function main() {
  const info = await selectBackend('auto', 'train');
  if (o.rssChild) {
    // Two real training steps (mse+ssim+edge, gradient clipping) at the requested batch size.
    const cfg = trainingConfigSchema.parse({
      image_size: size,
      batch_size: batch,
      model: { widths },
      loss: { perceptual: 0 },
    });
    const model = buildUNetLite({ imageSize: size, widths, seed: 0 });
    const opt = createOptimizer(cfg);
    const loss = await createLoss(cfg.loss, size);
    const x = tf.randomUniform([batch, size, size, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    for (let i = 0; i < 2; i++) trainOnBatch(model, opt, loss, x, cfg, 1e-4);
    console.log(Math.round(process.resourceUsage().maxRSS / 1024)); // MiB
    return;
  }
  console.log(`backend: ${info.name} (${info.reason}); simd ${info.simd}; threads ${info.threads}`);
  for (const n of info.notes) console.log(`  note: ${n}`);
  const ours: Ours[] = [];
  const torch1: Torch[] = [];
  let torchProblem: string | null = null;
  for (let i = 0; i < Number(o.repeat); i++) {
    ours.push(await measureOurs(batch, steps));
    const t = runTorch(1);
    if (typeof t === 'string') torchProblem = t;
    else torch1.push(t);
    console.log(
      `  run ${i + 1}: ours train ${ours[i].trainMsPerStep.toFixed(0)} ms/step, infer ${ours[i].inferMsPerBatch.toFixed(0)} ms/batch` +
        (typeof t === 'string'
          ? ''
          : `; torch(1 thread) train ${t.train_ms_per_step} ms/step, infer ${t.infer_ms_per_batch} ms/batch`),
    );
  }
  const torch2 = runTorch(2);
  const rss = Number(o.rssBatch) > 0 ? peakRssRun(Number(o.rssBatch)) : 'skipped';

  const med = {
    trainMs: median(ours.map((r) => r.trainMsPerStep)),
    fullMs: median(ours.map((r) => r.fullLossMsPerStep)),
    inferMs: median(ours.map((r) => r.inferMsPerBatch)),
  };
  const ratiosTrain = torch1.map((t, i) => t.train_ms_per_step / ours[i].trainMsPerStep);
  const ratiosInfer = torch1.map((t, i) => t.infer_ms_per_batch / ours[i].inferMsPerBatch);
  const result = {
    config: { size, batch, widths, steps, repeat: Number(o.repeat) },
    backend: info,
    ours: {
      train_ms_per_step: Math.round(med.trainMs),
      train_img_per_s: +((batch * 1000) / med.trainMs).toFixed(2),
      train_full_loss_ms_per_step: Math.round(med.fullMs),
      infer_ms_per_batch: Math.round(med.inferMs),
      infer_img_per_s: +((batch * 1000) / med.inferMs).toFixed(2),
    },
    torch_1_thread: torch1.at(-1) ?? torchProblem,
    torch_2_threads: torch2,
    ratio_vs_torch_1_thread: torch1.length
      ? {
          train: +median(ratiosTrain).toFixed(3),
          infer: +median(ratiosInfer).toFixed(3),
          per_run_train: ratiosTrain.map((r) => +r.toFixed(3)),
          per_run_infer: ratiosInfer.map((r) => +r.toFixed(3)),
        }
      : null,
    ratio_vs_torch_2_threads:
      typeof torch2 === 'string'
        ? null
        : {
            train: +(torch2.train_ms_per_step / med.trainMs).toFixed(3),
            infer: +(torch2.infer_ms_per_batch / med.inferMs).toFixed(3),
          },
    peak_rss_mib_train_batch: { batch: Number(o.rssBatch), rss },
  };
  console.log(
    [
      '',
      `ours (${info.name}, 1 thread): train ${result.ours.train_ms_per_step} ms/step = ${result.ours.train_img_per_s} img/s ` +
        `(mse+ssim+edge loss: ${result.ours.train_full_loss_ms_per_step} ms/step); infer ${result.ours.infer_ms_per_batch} ms/batch = ${result.ours.infer_img_per_s} img/s`,
      result.torch_1_thread === null || typeof result.torch_1_thread === 'string'
        ? `torch: ${result.torch_1_thread}`
        : `torch (1 thread): train ${result.torch_1_thread.train_img_per_s} img/s, infer ${result.torch_1_thread.infer_img_per_s} img/s`,
      typeof torch2 === 'string'
        ? ''
        : `torch (2 threads): train ${torch2.train_img_per_s} img/s, infer ${torch2.infer_img_per_s} img/s`,
      result.ratio_vs_torch_1_thread
        ? `ratio ours/torch, 1 thread (median of ${ratiosTrain.length}): train ${result.ratio_vs_torch_1_thread.train}x, infer ${result.ratio_vs_torch_1_thread.infer}x`
        : '',
      result.ratio_vs_torch_2_threads
        ? `ratio ours (1 thread: wasm is single-threaded in Node) / torch 2 threads: train ${result.ratio_vs_torch_2_threads.train}x, infer ${result.ratio_vs_torch_2_threads.infer}x`
        : '',
      `peak RSS, training process at batch ${o.rssBatch}: ${typeof rss === 'number' ? `${rss} MiB` : rss}`,
    ]
      .filter(Boolean)
      .join('\n'),
  );
  if (o.json) await writeFile(o.json, `${JSON.stringify(result, null, 2)}\n`);
}

await main();

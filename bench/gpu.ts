/**
 * `node --import tsx bench/gpu.ts [--providers cpu,webgpu,cuda] [--steps 20] [--json out.json]`
 * Training and inference throughput of the reference configuration (128x128, batch 8, widths
 * 16,32,64,128, Adam 1e-4, MSE, no clipping) on each ONNX Runtime execution provider that
 * initialises here, against PyTorch on CUDA (bench/torch_gpu_reference.py) in the same run; prints
 * one Markdown table. What scripts/device-check.sh runs on a GPU machine (bundled by
 * scripts/device-pack.sh into one .mjs with onnxruntime-node external); runs on CPU-only hosts too.
 *
 * Each provider trains the same initial weights on the same batch: the first step's loss is compared
 * with the CPU provider's (|Δloss|), a check that the provider computes the same thing.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { type TrainingConfig, trainingConfigSchema } from '../lib/config/schema';
import { createLoss } from '../lib/models/autoencoder/losses';
import { createOnnxReconstructor } from '../lib/models/autoencoder/runner';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import {
  type ExecutionProviderName,
  probeProvider,
  resolveExecutionProvider,
} from '../lib/onnx/execution-provider';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer } from '../lib/train/tfjs-train-engine';

const program = new Command('bench:gpu')
  .option('--providers <list>', 'execution providers to measure', 'cpu,webgpu,cuda')
  .option('--size <px>', 'image size', '128')
  .option('--batch <n>', 'batch size', '8')
  .option('--widths <list>', 'encoder widths', '16,32,64,128')
  .option('--steps <n>', 'timed steps per measurement', '20')
  .option('--cpu-steps <n>', 'timed steps on the CPU provider (slower)', '5')
  .option('--threads <n>', 'ONNX Runtime CPU threads (default: all cores)')
  .option('--torch-script <path>', 'PyTorch peer', 'bench/torch_gpu_reference.py')
  .option('--torch-device <dev>', "PyTorch peer's device ('' to skip)", 'cuda')
  .option('--python <exe>', 'Python with torch', 'python3')
  .option('--json <file>', 'also write the results as JSON')
  .parse();
const o = program.opts<{
  providers: string;
  size: string;
  batch: string;
  widths: string;
  steps: string;
  cpuSteps: string;
  threads?: string;
  torchScript: string;
  torchDevice: string;
  python: string;
  json?: string;
}>();

const size = Number(o.size);
const batch = Number(o.batch);
const widths = o.widths.split(',').map(Number);
const threads = o.threads ? Number(o.threads) : availableParallelism();

interface Row {
  runtime: string;
  provider: string;
  status: string;
  trainMs?: number;
  inferMs?: number;
  firstLoss?: number;
  dLossVsCpu?: number;
  note?: string;
}

const cfg: TrainingConfig = trainingConfigSchema.parse({
  image_size: size,
  batch_size: batch,
  model: { widths },
  optimizer: { name: 'adam', lr: 1e-4, weight_decay: 0 },
  grad_clip: null, // the peer does not clip
  loss: { mse: 1, ssim: 0, edge: 0, perceptual: 0 },
  threads,
  backend: 'cpu',
});

let images: Float32Array = new Float32Array(0);
let model: tf.LayersModel | undefined;

async function timeIt(n: number, f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < n; i++) await f();
  return (performance.now() - t) / n;
}

async function measure(provider: ExecutionProviderName, cpuLoss: number | undefined): Promise<Row> {
  const runtime = 'onnxruntime-node';
  const probe = await probeProvider(await import('onnxruntime-node'), provider, 0);
  if (!probe.ok) return { runtime, provider, status: 'unavailable', note: tail(probe.error ?? '', 160) };
  const ep = await resolveExecutionProvider(provider, { env: {} });
  // One model for every provider: each engine copies its initial weights (syncFromModel) and never
  // writes them back, so all providers start from the same weights.
  model ??= buildUNetLite({ imageSize: size, widths, seed: 0 });
  const engine = await OnnxTrainEngine.create(
    model,
    createOptimizer(cfg),
    await createLoss(cfg.loss, size),
    cfg,
    {
      threads,
      executionProvider: ep,
    },
  );
  const steps = provider === 'cpu' ? Number(o.cpuSteps) : Number(o.steps);
  try {
    const first = (await engine.step(images, batch, 1e-4)).loss;
    await engine.step(images, batch, 1e-4); // warm-up
    const trainMs = await timeIt(steps, () => engine.step(images, batch, 1e-4));
    const rec = await createOnnxReconstructor(model, { threads, executionProvider: ep });
    await rec.reconstruct(images, batch, size);
    await rec.reconstruct(images, batch, size);
    const inferMs = await timeIt(steps, () => rec.reconstruct(images, batch, size));
    await rec.release();
    return {
      runtime,
      provider,
      status: 'ok',
      trainMs,
      inferMs,
      firstLoss: first,
      dLossVsCpu: cpuLoss === undefined ? undefined : Math.abs(first - cpuLoss),
      note: `${threads} CPU threads`,
    };
  } finally {
    await engine.release();
  }
}

function torchPeer(device: string): Row {
  const r = spawnSync(
    o.python,
    [
      o.torchScript,
      '--device',
      device,
      '--size',
      o.size,
      '--batch',
      o.batch,
      '--widths',
      o.widths,
      '--steps',
      o.steps,
    ],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || '').trim().split('\n').at(-1);
    return { runtime: 'pytorch', provider: device, status: 'failed', note: why };
  }
  const j = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as {
    peer: string;
    device: string;
    train_ms_per_step: number;
    infer_ms_per_batch: number;
  };
  return {
    runtime: j.peer,
    provider: j.device,
    status: 'ok',
    trainMs: j.train_ms_per_step,
    inferMs: j.infer_ms_per_batch,
    note: 'float32, TF32 off, cudnn.benchmark',
  };
}

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  images = tf.tidy(
    () => tf.randomUniform([batch, size, size, 3], 0, 1, 'float32', 1).dataSync() as Float32Array,
  );
  const providers = o.providers.split(',').map((s) => s.trim()) as ExecutionProviderName[];
  const rows: Row[] = [];
  let cpuLoss: number | undefined;
  // CPU first: its first-step loss is the reference for the others.
  for (const p of ['cpu', ...providers.filter((x) => x !== 'cpu')] as ExecutionProviderName[]) {
    if (p === 'cpu' && !providers.includes('cpu')) continue;
    process.stderr.write(`measuring ${p}...\n`);
    try {
      const row = await measure(p, cpuLoss);
      if (p === 'cpu') cpuLoss = row.firstLoss;
      rows.push(row);
    } catch (err) {
      rows.push({
        runtime: 'onnxruntime-node',
        provider: p,
        status: 'failed',
        note: String(err).slice(0, 200),
      });
    }
  }
  if (o.torchDevice) {
    process.stderr.write(`measuring PyTorch on ${o.torchDevice}...\n`);
    rows.push(torchPeer(o.torchDevice));
  }
  const peer = rows.find((r) => r.runtime.startsWith('pytorch') && r.status === 'ok');
  const f = (v: number | undefined, d = 1) => (v === undefined ? '–' : v.toFixed(d));
  const ips = (ms: number | undefined) => (ms === undefined ? undefined : (batch * 1000) / ms);
  const ratio = (ms: number | undefined, ref: number | undefined) =>
    ms === undefined || ref === undefined ? '–' : `${(ms / ref).toFixed(2)}x`;
  const lines = [
    `reference U-Net-lite ${size}x${size}, batch ${batch}, widths ${widths.join(',')}, Adam 1e-4, MSE, float32`,
    '',
    '| runtime | execution provider | status | train ms/step | train img/s | infer ms/batch | infer img/s | train time vs PyTorch | infer time vs PyTorch | first-step loss, Δ vs CPU | notes |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.runtime} | ${r.provider} | ${r.status} | ${f(r.trainMs)} | ${f(ips(r.trainMs))} | ${f(r.inferMs)} | ${f(ips(r.inferMs))} | ${r === peer ? '1.00x' : ratio(r.trainMs, peer?.trainMs)} | ${r === peer ? '1.00x' : ratio(r.inferMs, peer?.inferMs)} | ${r.firstLoss === undefined ? '–' : `${r.firstLoss.toFixed(6)}${r.dLossVsCpu === undefined ? '' : `, ${r.dLossVsCpu.toExponential(1)}`}`} | ${(r.note ?? '').replace(/\|/g, '/')} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (o.json) writeFileSync(o.json, JSON.stringify({ size, batch, widths, threads, rows }, null, 2));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

function tail(s: string, n: number): string {
  return s.length > n ? `…${s.slice(-n)}` : s;
}

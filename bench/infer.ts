import { writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { anomalyMapSchema } from '../lib/config/schema';
import { scoreImages } from '../lib/eval/anomaly-map';
import { selectBackend } from '../lib/model/backend';
import { createOnnxReconstructor, type OnnxReconstructor } from '../lib/models/autoencoder/runner';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { median, runTorchPeer } from './torch-peer';

const program = new Command('bench:infer')
  .option('--size <px>', 'image size', '128')
  .option('--batch <n>', 'batch size', '8')
  .option('--widths <list>', 'encoder widths', '16,32,64,128')
  .option('--steps <n>', 'timed batches per measurement', '10')
  .option('--repeat <n>', 'alternating rounds over all engines', '3')
  .option('--torch-script <path>', 'PyTorch reference script', '../shared/bench/torch_reference.py')
  .option('--json <file>', 'also write the results as JSON')
  .parse();
const o = program.opts<{
  size: string;
  batch: string;
  widths: string;
  steps: string;
  repeat: string;
  torchScript: string;
  json?: string;
}>();
const size = Number(o.size);
const batch = Number(o.batch);
const widths = o.widths.split(',').map(Number);
const steps = Number(o.steps);
const repeat = Number(o.repeat);

/** Mean ms per call of `f` over `steps` calls after one warm-up call. */
async function timeMs(f: () => Promise<unknown>): Promise<number> {
  await f();
  const t = performance.now();
  for (let i = 0; i < steps; i++) await f();
  return (performance.now() - t) / steps;
}

/** ms per batch of the PyTorch peer's inference, or why it did not run. */
function torchInferMs(threads: number): number | string {
  const r = runTorchPeer({ script: o.torchScript, threads, size, batch, widths: o.widths, steps });
  return typeof r === 'string' ? r : r.infer_ms_per_batch;
}

async function main(): Promise<void> {
  const backend = await selectBackend('auto', 'infer');
  const model = buildUNetLite({ imageSize: size, widths, seed: 0 });
  const images = tf.tidy(
    () => tf.randomUniform([batch, size, size, 3], 0, 1, 'float32', 1).dataSync() as Float32Array,
  );
  const onnx: Record<number, OnnxReconstructor> = {
    1: await createOnnxReconstructor(model, { threads: 1 }),
    2: await createOnnxReconstructor(model, { threads: 2 }),
  };
  const tfjsPredict = async () => {
    const y = tf.tidy(() => model.predict(tf.tensor4d(images, [batch, size, size, 3])) as tf.Tensor);
    const data = await y.data();
    y.dispose();
    return data as Float32Array;
  };
  const [ref, got] = [await tfjsPredict(), await onnx[1].reconstruct(images, batch, size)];
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i] - got[i]));

  const cfg = anomalyMapSchema.parse({});
  const keys = ['tfjs', 'onnx1', 'onnx2', 'torch1', 'torch2', 'score_tfjs', 'score_onnx2'] as const;
  type Key = (typeof keys)[number];
  const rounds: Record<Key, number | string>[] = [];
  for (let r = 0; r < repeat; r++) {
    const round = {
      tfjs: await timeMs(tfjsPredict),
      onnx1: await timeMs(() => onnx[1].reconstruct(images, batch, size)),
      onnx2: await timeMs(() => onnx[2].reconstruct(images, batch, size)),
      torch1: torchInferMs(1),
      torch2: torchInferMs(2),
      score_tfjs: await timeMs(() => scoreImages(model, images, batch, size, cfg, batch)),
      score_onnx2: await timeMs(() =>
        scoreImages(model, images, batch, size, cfg, batch, { reconstruct: onnx[2].reconstruct }),
      ),
    };
    rounds.push(round);
    const fmt = (v: number | string) => (typeof v === 'number' ? `${v.toFixed(1)}` : v);
    console.log(
      `round ${r + 1}: ms/batch of ${batch}: ${keys.map((k) => `${k} ${fmt(round[k])}`).join(', ')}`,
    );
  }
  const med = (k: Key) => {
    const xs = rounds.map((r) => r[k]).filter((v): v is number => typeof v === 'number');
    return xs.length ? median(xs) : null;
  };
  /** Median over rounds of (peer ms / ours ms): > 1 means ours is faster. */
  const ratio = (ours: Key, peer: Key) => {
    const xs = rounds
      .filter((r) => typeof r[ours] === 'number' && typeof r[peer] === 'number')
      .map((r) => (r[peer] as number) / (r[ours] as number));
    return xs.length ? +median(xs).toFixed(3) : null;
  };
  const imgs = (k: Key) => {
    const m = med(k);
    return m === null ? null : +((batch * 1000) / m).toFixed(2);
  };
  const result = {
    config: { size, batch, widths, steps, repeat },
    backend: `${backend.name} (${backend.reason}); simd ${backend.simd}; threads ${backend.threads}`,
    node: process.version,
    cpus: cpus().length,
    max_abs_diff_onnx_vs_tfjs: maxDiff,
    ms_per_batch_median: Object.fromEntries(keys.map((k) => [k, med(k)])),
    img_per_s: Object.fromEntries(keys.map((k) => [k, imgs(k)])),
    ratios_vs_torch_1_thread: {
      tfjs: ratio('tfjs', 'torch1'),
      onnx_1_thread: ratio('onnx1', 'torch1'),
      onnx_2_threads: ratio('onnx2', 'torch1'),
    },
    ratios_same_threads: {
      onnx1_vs_torch1: ratio('onnx1', 'torch1'),
      onnx2_vs_torch2: ratio('onnx2', 'torch2'),
    },
    onnx1_vs_tfjs: ratio('onnx1', 'tfjs'),
    torch_problem: rounds.map((r) => r.torch1).find((v) => typeof v === 'string') ?? null,
    loadavg_end: loadavg().map((v) => +v.toFixed(2)),
  };
  const i = result.img_per_s;
  const rt = result.ratios_vs_torch_1_thread;
  console.log(
    [
      `model ${size}x${size}, batch ${batch}, widths ${widths.join(',')}, random init; tfjs backend ${result.backend}; node ${process.version}; ${result.cpus} CPUs`,
      `max |onnx - tfjs| on the timed batch: ${maxDiff.toExponential(2)}`,
      '',
      '| engine | ms/batch (median) | img/s | ratio vs torch 1 thread | ratio vs torch, same threads |',
      '|---|---|---|---|---|',
      `| tfjs ${backend.name} (1 thread) | ${med('tfjs')?.toFixed(1)} | ${i.tfjs} | ${rt.tfjs}x | ${rt.tfjs}x |`,
      `| ONNX Runtime, 1 thread | ${med('onnx1')?.toFixed(1)} | ${i.onnx1} | ${rt.onnx_1_thread}x | ${result.ratios_same_threads.onnx1_vs_torch1}x |`,
      `| ONNX Runtime, 2 threads | ${med('onnx2')?.toFixed(1)} | ${i.onnx2} | ${rt.onnx_2_threads}x | ${result.ratios_same_threads.onnx2_vs_torch2}x |`,
      `| PyTorch, 1 thread | ${med('torch1')?.toFixed(1) ?? '-'} | ${i.torch1 ?? '-'} | 1x | 1x |`,
      `| PyTorch, 2 threads | ${med('torch2')?.toFixed(1) ?? '-'} | ${i.torch2 ?? '-'} | ${ratio('torch2', 'torch1')}x | 1x |`,
      '',
      `scoreImages (forward pass + anomaly map, the serving path), ms per image: tfjs ${((med('score_tfjs') ?? 0) / batch).toFixed(1)}, onnx 2 threads ${((med('score_onnx2') ?? 0) / batch).toFixed(1)}`,
      `ONNX Runtime 1 thread / tfjs ${backend.name}: ${result.onnx1_vs_tfjs}x`,
      result.torch_problem ? `torch: ${result.torch_problem}` : '',
      `load average at the end: ${result.loadavg_end.join(', ')}`,
    ].join('\n'),
  );
  if (o.json) await writeFile(o.json, `${JSON.stringify(result, null, 2)}\n`);
  await Promise.all(Object.values(onnx).map((s) => s.release()));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

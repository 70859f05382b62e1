/**
 * `npm run bench:perceptual [-- --size 128 --batch 8 --threads 2 --steps 5 --rounds 3]`
 * The cost of the backbone perceptual term (loss.perceptual_backbone) on the ONNX Runtime training
 * engine: ms per training step of the U-Net-lite (widths 16-128, mse + ssim + edge) without and with
 * the term, alternating within each round, median over rounds. Needs requirements-backbone.txt.
 */
import { Command } from 'commander';
import { trainingConfigSchema } from '../lib/config/schema';
import { selectBackend } from '../lib/model/backend';
import { createLoss } from '../lib/models/autoencoder/losses';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer } from '../lib/train/tfjs-train-engine';
import { positiveInt } from '../lib/util/cli-args';
import { median } from './torch-peer';

const o = new Command('bench:perceptual')
  .option('--size <px>', 'image size', positiveInt, 128)
  .option('--batch <n>', 'batch size', positiveInt, 8)
  .option('--threads <n>', 'ONNX Runtime threads', positiveInt, 2)
  .option('--steps <n>', 'timed steps per measurement', positiveInt, 5)
  .option('--rounds <n>', 'rounds (without, with)', positiveInt, 3)
  .parse()
  .opts<{ size: number; batch: number; threads: number; steps: number; rounds: number }>();

await selectBackend('wasm', 'train');
const images = Float32Array.from(
  { length: o.batch * o.size * o.size * 3 },
  (_, i) => (Math.sin(i / 13) + 1) / 2,
);
const variants = ['none', 'efficientnet-lite0'] as const;
const ms: Record<(typeof variants)[number], number[]> = { none: [], 'efficientnet-lite0': [] };
for (let round = 0; round < o.rounds; round++)
  for (const backbone of variants) {
    const cfg = trainingConfigSchema.parse({
      image_size: o.size,
      batch_size: o.batch,
      model: { widths: [16, 32, 64, 128] },
      loss: {
        mse: 1,
        ssim: 0.5,
        edge: 0.2,
        perceptual: 0.1,
        perceptual_model: null,
        perceptual_backbone: backbone,
      },
    });
    const model = buildUNetLite({ imageSize: o.size, widths: cfg.model.widths, seed: 1 });
    const loss = await createLoss(cfg.loss, o.size);
    const engine = await OnnxTrainEngine.create(model, createOptimizer(cfg), loss, cfg, {
      threads: o.threads,
    });
    await engine.step(images, o.batch, 1e-4); // warm-up
    const t0 = performance.now();
    for (let k = 0; k < o.steps; k++) await engine.step(images, o.batch, 1e-4);
    ms[backbone].push((performance.now() - t0) / o.steps);
    await engine.release();
    model.dispose();
    loss.dispose();
  }
const without = median(ms.none);
const withTerm = median(ms['efficientnet-lite0']);
console.log(
  `ms/step (${o.size} px, batch ${o.batch}, ${o.threads} threads, median of ${o.rounds} rounds of ${o.steps} steps): ` +
    `without ${without.toFixed(0)}, with the perceptual term ${withTerm.toFixed(0)}, ratio ${(withTerm / without).toFixed(2)}`,
);

/** Tiny in-memory datasets and configs for model/train tests (32 px, a handful of images). */
import { type TrainingConfig, trainingConfigSchema } from '../../lib/config/schema';
import type { CachedSplit } from '../../lib/data/tensor-cache';

/** Smooth random-ish patterns (deterministic per seed) so the autoencoder has something to learn. */
export function tinySplit(
  count: number,
  size = 32,
  seed = 1,
  split: CachedSplit['split'] = 'train',
): CachedSplit {
  const images = new Uint8Array(count * size * size * 3);
  let s = seed;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
  for (let n = 0; n < count; n++) {
    const fx = 1 + rnd() * 3;
    const fy = 1 + rnd() * 3;
    const ph = rnd() * 6;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) {
          const v =
            0.5 + 0.4 * Math.sin(((fx * x) / size) * 6.28 + ph + c) * Math.cos(((fy * y) / size) * 6.28);
          images[((n * size + y) * size + x) * 3 + c] = Math.round(v * 255);
        }
  }
  return { split, count, size, channels: 3, images, masks: null, records: [] };
}

export function tinyConfig(overrides: Record<string, unknown> = {}): TrainingConfig {
  return trainingConfigSchema.parse({
    image_size: 32,
    batch_size: 4,
    epochs: 2,
    seed: 7,
    model: { widths: [4, 8] },
    optimizer: { name: 'adam', lr: 1e-3, weight_decay: 0 },
    loss: { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0.1, perceptual_model: null },
    augmentation: { enabled: true },
    backend: 'wasm',
    ...overrides,
  });
}

/**
 * Synthetic defects for training (a denoising objective): the network sees a good image with a few
 * patches replaced, either by a patch cut from elsewhere in the same image or by a flat colour, and
 * is trained to output the clean image.
 *
 * Why: an autoencoder with U-Net skips, trained to reproduce its input, learns to copy whatever it
 * sees, so a missing pin or a foreign blob comes back as it is and leaves no error. Restoring pasted
 * patches teaches it what a good part looks like from the context around them (the reconstructive
 * half of DRAEM; inpainting autoencoders), so at test time it reconstructs the part as it should be
 * and the difference shows up in the anomaly map.
 */
import type { SyntheticDefectsConfig } from '../config/schema';
import type { Rng } from '../util/rng';

/**
 * Returns a copy of `clean` (n NHWC images of size x size x 3 in [0,1]) with synthetic defects in
 * some images, or `clean` itself when `cfg.probability` is 0. Per image, in this order of draws:
 * whether it gets defects, how many, then per defect its shape, size, position, fill and opacity.
 */
export function withSyntheticDefects(
  clean: Float32Array,
  n: number,
  size: number,
  cfg: SyntheticDefectsConfig,
  rng: Rng,
): Float32Array {
  if (cfg.probability <= 0) return clean;
  const out = clean.slice();
  const per = size * size * 3;
  for (let b = 0; b < n; b++) {
    if (rng.next() >= cfg.probability) continue;
    const count = 1 + rng.int(cfg.max_count);
    for (let d = 0; d < count; d++) pasteDefect(clean, out, b * per, size, cfg, rng);
  }
  return out;
}

function pasteDefect(
  src: Float32Array,
  out: Float32Array,
  base: number,
  size: number,
  cfg: SyntheticDefectsConfig,
  rng: Rng,
): void {
  const ellipse = rng.next() < 0.5;
  const w = Math.max(2, Math.round(rng.uniform(cfg.min_size, cfg.max_size) * size));
  const h = Math.max(2, Math.round(rng.uniform(cfg.min_size, cfg.max_size) * size));
  const x0 = rng.int(size - w + 1);
  const y0 = rng.int(size - h + 1);
  // Cut-paste from another place of the same (clean) image, or a flat colour.
  const cut = rng.next() < 0.5;
  const sx0 = rng.int(size - w + 1);
  const sy0 = rng.int(size - h + 1);
  const colour = [rng.next(), rng.next(), rng.next()];
  // Faint defects too, so that the network also learns to remove subtle ones.
  const alpha = rng.uniform(0.5, 1);
  const rx = w / 2;
  const ry = h / 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (ellipse && ((x + 0.5 - rx) / rx) ** 2 + ((y + 0.5 - ry) / ry) ** 2 > 1) continue;
      const o = base + ((y0 + y) * size + x0 + x) * 3;
      const s = base + ((sy0 + y) * size + sx0 + x) * 3;
      for (let k = 0; k < 3; k++) {
        const fill = cut ? src[s + k] : colour[k];
        out[o + k] = (1 - alpha) * out[o + k] + alpha * fill;
      }
    }
  }
}

/**
 * Training-time augmentation of uint8 NHWC batches into float [0,1] batches, seeded by an Rng so a
 * resumed run draws the same augmentations. Per image, in this order of draws: rotation angle,
 * hflip, vflip, brightness, contrast, then the noise offset and stride.
 */
import type { AugmentationConfig } from '../config/schema';
import { Rng } from '../util/rng';

const INV255 = 1 / 255;

/** Plain conversion to floats in [0,1] (validation, evaluation, augmentation disabled). */
export function toFloatBatch(images: Uint8Array, indices: readonly number[], size: number): Float32Array {
  const n = size * size * 3;
  const out = new Float32Array(indices.length * n);
  indices.forEach((idx, b) => {
    const src = idx * n;
    const dst = b * n;
    for (let k = 0; k < n; k++) out[dst + k] = images[src + k] * INV255;
  });
  return out;
}

interface ImageAug {
  cos: number;
  sin: number;
  hflip: boolean;
  vflip: boolean;
  brightness: number;
  contrast: number;
}

function drawAug(cfg: AugmentationConfig, rng: Rng): ImageAug {
  const deg = cfg.rotation_limit > 0 ? rng.uniform(-cfg.rotation_limit, cfg.rotation_limit) : 0;
  const rad = (deg * Math.PI) / 180;
  return {
    cos: Math.cos(rad),
    sin: Math.sin(rad),
    hflip: cfg.hflip && rng.next() < 0.5,
    vflip: cfg.vflip && rng.next() < 0.5,
    brightness: cfg.brightness_limit > 0 ? rng.uniform(-cfg.brightness_limit, cfg.brightness_limit) : 0,
    contrast: cfg.contrast_limit > 0 ? 1 + rng.uniform(-cfg.contrast_limit, cfg.contrast_limit) : 1,
  };
}

/** Reflect-101 border (a b c | b a): no black corners after rotation. */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

/** Geometric part: bilinear rotation about the centre plus flips, written as floats in [0,1]. */
function warp(
  src: Uint8Array,
  srcOff: number,
  out: Float32Array,
  dstOff: number,
  size: number,
  a: ImageAug,
): void {
  const c = (size - 1) / 2;
  for (let y = 0; y < size; y++) {
    const dy = y - c;
    for (let x = 0; x < size; x++) {
      const dx = x - c;
      let sx = a.cos * dx + a.sin * dy + c;
      let sy = -a.sin * dx + a.cos * dy + c;
      if (a.hflip) sx = size - 1 - sx;
      if (a.vflip) sy = size - 1 - sy;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const xa = reflect(x0, size);
      const xb = reflect(x0 + 1, size);
      const ra = srcOff + reflect(y0, size) * size * 3;
      const rb = srcOff + reflect(y0 + 1, size) * size * 3;
      const o = dstOff + (y * size + x) * 3;
      for (let k = 0; k < 3; k++) {
        const top = src[ra + xa * 3 + k] * (1 - fx) + src[ra + xb * 3 + k] * fx;
        const bot = src[rb + xa * 3 + k] * (1 - fx) + src[rb + xb * 3 + k] * fx;
        out[o + k] = (top * (1 - fy) + bot * fy) * INV255;
      }
    }
  }
}

const NOISE_TABLE_SIZE = 1 << 16;
let noiseTable: Float32Array | null = null;

/**
 * Per-value gaussian noise as a walk through a fixed table of 65536 standard normals, starting at a
 * random offset with a random odd stride (so all values of an image up to 256x256 get distinct
 * entries). Drawing a fresh normal per value took most of the augmentation time.
 */
function addGaussianNoise(out: Float32Array, start: number, n: number, std: number, rng: Rng): void {
  if (!noiseTable) {
    const r = new Rng(0x5eed);
    noiseTable = Float32Array.from({ length: NOISE_TABLE_SIZE }, () => r.normal());
  }
  const table = noiseTable;
  const mask = NOISE_TABLE_SIZE - 1;
  let pos = rng.int(NOISE_TABLE_SIZE);
  const stride = 2 * rng.int(NOISE_TABLE_SIZE / 2) + 1;
  for (let k = start; k < start + n; k++) {
    out[k] += std * table[pos];
    pos = (pos + stride) & mask;
  }
}

/** Augments the images at `indices` of an N*S*S*3 uint8 batch; returns len(indices)*S*S*3 floats in [0,1]. */
export function augmentBatch(
  images: Uint8Array,
  indices: readonly number[],
  size: number,
  cfg: AugmentationConfig,
  rng: Rng,
): Float32Array {
  if (!cfg.enabled) return toFloatBatch(images, indices, size);
  const n = size * size * 3;
  const out = new Float32Array(indices.length * n);
  indices.forEach((idx, b) => {
    const a = drawAug(cfg, rng);
    const dst = b * n;
    if (a.sin === 0 && !a.hflip && !a.vflip) {
      for (let k = 0; k < n; k++) out[dst + k] = images[idx * n + k] * INV255;
    } else {
      warp(images, idx * n, out, dst, size, a);
    }
    for (let k = dst; k < dst + n; k++) out[k] = (out[k] - 0.5) * a.contrast + 0.5 + a.brightness;
    if (cfg.noise_factor > 0) addGaussianNoise(out, dst, n, cfg.noise_factor, rng);
    for (let k = dst; k < dst + n; k++) out[k] = Math.min(1, Math.max(0, out[k]));
  });
  return out;
}

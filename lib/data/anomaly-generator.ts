/**
 * Realistic synthetic anomalies (DRAEM / TransFusion style) for training without any download: a
 * region shaped by thresholded Perlin noise (random scale and rotation), or a thin curved stroke
 * (scratch, crack, thread), filled by blending the image with an anomaly source at an opacity drawn
 * from [min_opacity, max_opacity]. Sources, all made from the batch itself or procedurally:
 *   self     another region of the same good image (shifted, possibly flipped)
 *   other    a region of another image of the batch (the same image when the batch has one)
 *   tiles    shuffled tiles of an augmented (flipped, brightness/contrast-jittered) copy: TransFusion's
 *            self-source
 *   texture  procedural: Perlin colour noise, stripes at a random angle and period, speckle
 *   colour   the image itself with a colour/brightness shift
 *   blur     the image itself box-blurred
 *   stroke   a thin curve (a cubic Bezier, 1-3 px wide) filled with a dark, bright or random colour
 *
 * The masks are exact: the blend alpha is `opacity` inside a defect's region and 0 outside, and the mask
 * is the set of pixels whose alpha is >= MASK_ALPHA_THRESHOLD (every pixel of a region, as opacity >=
 * 0.1): outside the mask the output equals the input bit for bit. Regions of one image may overlap; the
 * mask is their union.
 *
 * Region sizes reuse the synthetic_defects knobs: a Perlin region covers an area fraction drawn from
 * [min_size^2, max_size^2] of the image (the threshold is the matching quantile of the noise field), so
 * `patches` and `realistic` defects of one config have comparable areas.
 *
 * Deterministic: everything is drawn from the trainer's seeded Rng (lib/util/rng), in a fixed order.
 */
import type { SyntheticDefectsConfig } from '../config/schema';
import type { Rng } from '../util/rng';
import { withSyntheticDefects } from './synthetic-defects';

export const ANOMALY_KINDS = ['self', 'other', 'tiles', 'texture', 'colour', 'blur', 'stroke'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

/** A pixel belongs to the mask when its blend alpha is at least this. */
export const MASK_ALPHA_THRESHOLD = 0.1;

export interface AnomalyOptions {
  /** Share of images that get anomalies. */
  probability: number;
  /** Anomalies per chosen image: 1 to maxCount. */
  maxCount: number;
  /** Area fraction of one Perlin region: [minArea, maxArea]. */
  minArea: number;
  maxArea: number;
  /** Blend opacity range, within [MASK_ALPHA_THRESHOLD, 1]. */
  minOpacity: number;
  maxOpacity: number;
  /** The kinds to draw from (uniformly); all by default. */
  kinds: readonly AnomalyKind[];
}

export const DEFAULT_ANOMALY_OPTIONS: AnomalyOptions = {
  probability: 0.5,
  maxCount: 2,
  minArea: 0.05 ** 2,
  maxArea: 0.25 ** 2,
  minOpacity: 0.1,
  maxOpacity: 1,
  kinds: ANOMALY_KINDS,
};

/** One anomaly as drawn: for tests and logging. */
export interface AnomalyRecord {
  image: number;
  kind: AnomalyKind;
  opacity: number;
  /** Pixels of its region (before the union with other anomalies of the image). */
  area: number;
}

export interface GeneratedAnomalies {
  /** n NHWC images, size x size x 3: a copy of the input with anomalies. */
  images: Float32Array;
  /** n x size x size, 1 inside the mask, 0 outside. */
  masks: Float32Array;
  anomalies: AnomalyRecord[];
}

/** Options of the realistic generator from a synthetic_defects config. */
export function anomalyOptions(cfg: SyntheticDefectsConfig): AnomalyOptions {
  return {
    ...DEFAULT_ANOMALY_OPTIONS,
    probability: cfg.probability,
    maxCount: cfg.max_count,
    minArea: cfg.min_size ** 2,
    maxArea: cfg.max_size ** 2,
  };
}

/**
 * The trainer's entry point: `clean` with synthetic defects of the configured generator ('patches', the
 * default, is lib/data/synthetic-defects; 'realistic' is this file). Returns `clean` itself when
 * probability is 0.
 */
export function applySyntheticDefects(
  clean: Float32Array,
  n: number,
  size: number,
  cfg: SyntheticDefectsConfig,
  rng: Rng,
): Float32Array {
  if ((cfg.generator ?? 'patches') === 'patches') return withSyntheticDefects(clean, n, size, cfg, rng);
  if (cfg.probability <= 0) return clean;
  return generateAnomalies(clean, n, size, anomalyOptions(cfg), rng).images;
}

/**
 * Anomalies in some of the n NHWC images of `clean` (values in [0,1]). Per image, in this order of
 * draws: whether it gets anomalies, how many, then per anomaly its kind, opacity, region and source.
 */
export function generateAnomalies(
  clean: Float32Array,
  n: number,
  size: number,
  options: Partial<AnomalyOptions>,
  rng: Rng,
): GeneratedAnomalies {
  const o = { ...DEFAULT_ANOMALY_OPTIONS, ...options };
  if (o.kinds.length === 0) throw new Error('anomaly generator: no kinds to draw from');
  if (o.minOpacity < MASK_ALPHA_THRESHOLD || o.maxOpacity > 1 || o.minOpacity > o.maxOpacity)
    throw new Error(`anomaly generator: opacity range must lie in [${MASK_ALPHA_THRESHOLD}, 1]`);
  const images = clean.slice();
  const masks = new Float32Array(n * size * size);
  const anomalies: AnomalyRecord[] = [];
  const per = size * size * 3;
  const px = size * size;
  for (let b = 0; b < n; b++) {
    if (rng.next() >= o.probability) continue;
    const count = 1 + rng.int(o.maxCount);
    for (let d = 0; d < count; d++) {
      const kind = o.kinds[rng.int(o.kinds.length)];
      const opacity = rng.uniform(o.minOpacity, o.maxOpacity);
      const region =
        kind === 'stroke'
          ? strokeRegion(size, rng)
          : perlinRegion(size, rng.uniform(o.minArea, o.maxArea), rng);
      const image = images.subarray(b * per, (b + 1) * per);
      const source = anomalySource(kind, clean, b, n, size, image, rng);
      const mask = masks.subarray(b * px, (b + 1) * px);
      let area = 0;
      for (let p = 0; p < px; p++) {
        if (!region[p]) continue;
        area++;
        mask[p] = 1;
        for (let k = 0; k < 3; k++) {
          const i = p * 3 + k;
          image[i] = (1 - opacity) * image[i] + opacity * source[i];
        }
      }
      anomalies.push({ image: b, kind, opacity, area });
    }
  }
  return { images, masks, anomalies };
}

// ---------------------------------------------------------------- regions

const fade = (t: number) => t * t * t * (t * (t * 6 - 15) + 10);

/**
 * A Perlin noise field over size x size, `octaves` octaves, cell side `cell` px, sampled at coordinates
 * rotated by `angle` about the centre. Lattice gradients are drawn from `rng`.
 */
export function perlinField(
  size: number,
  cell: number,
  angle: number,
  octaves: number,
  rng: Rng,
): Float32Array {
  const field = new Float32Array(size * size);
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const c = size / 2;
  let amp = 1;
  for (let oct = 0; oct < octaves; oct++) {
    const cs = cell / 2 ** oct;
    // Rotated coordinates lie within radius c*sqrt(2) of the centre: the lattice covers that disc.
    const g = Math.ceil((2 * c * Math.SQRT2) / cs) + 2;
    const gx = new Float32Array(g * g);
    const gy = new Float32Array(g * g);
    for (let i = 0; i < g * g; i++) {
      const a = rng.next() * 2 * Math.PI;
      gx[i] = Math.cos(a);
      gy[i] = Math.sin(a);
    }
    const off = (g - 1) / 2;
    const inv = 1 / cs;
    for (let y = 0; y < size; y++) {
      const dy = y + 0.5 - c;
      for (let x = 0; x < size; x++) {
        const dx = x + 0.5 - c;
        const u = (cos * dx - sin * dy) * inv + off;
        const v = (sin * dx + cos * dy) * inv + off;
        const i0 = Math.floor(u);
        const j0 = Math.floor(v);
        const fu = u - i0;
        const fv = v - j0;
        const k00 = j0 * g + i0;
        const k01 = k00 + g;
        const n00 = gx[k00] * fu + gy[k00] * fv;
        const n10 = gx[k00 + 1] * (fu - 1) + gy[k00 + 1] * fv;
        const n01 = gx[k01] * fu + gy[k01] * (fv - 1);
        const n11 = gx[k01 + 1] * (fu - 1) + gy[k01 + 1] * (fv - 1);
        const su = fade(fu);
        const sv = fade(fv);
        const top = n00 + su * (n10 - n00);
        const bottom = n01 + su * (n11 - n01);
        field[y * size + x] += amp * (top + sv * (bottom - top));
      }
    }
    amp /= 2;
  }
  return field;
}

/**
 * A thresholded Perlin region covering `areaFraction` of the image (the noise quantile), >= 1 px. Most
 * regions are localised: the noise is added to a Gaussian bump at a random centre (weight 0.2-1.5 of
 * the noise), so the threshold cuts one blob with Perlin edges and a few satellites; a quarter are
 * DRAEM's plain thresholded noise, blobs scattered over the whole image.
 */
function perlinRegion(size: number, areaFraction: number, rng: Rng): Uint8Array {
  const minCell = Math.max(2, size / 16);
  const maxCell = Math.max(minCell, size / 2);
  const cell = minCell * (maxCell / minCell) ** rng.next(); // log-uniform scale
  const angle = rng.next() * Math.PI;
  const octaves = 1 + rng.int(2);
  const field = perlinField(size, cell, angle, octaves, rng);
  const px = size * size;
  const target = Math.min(px, Math.max(1, Math.round(areaFraction * px)));
  if (rng.next() < 0.75) {
    const cx = rng.uniform(0, size);
    const cy = rng.uniform(0, size);
    const radius = Math.max(1, Math.sqrt(target / Math.PI) * rng.uniform(0.8, 1.6));
    const noiseWeight = rng.uniform(0.2, 1.5);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const d2 = ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) / (radius * radius);
        field[y * size + x] = Math.exp(-d2) + noiseWeight * field[y * size + x];
      }
  }
  const sorted = Float32Array.from(field).sort();
  const threshold = sorted[px - target]; // the target-th largest value
  const region = new Uint8Array(px);
  let count = 0;
  // Ties at the threshold are cut at `target` pixels, so the area is exact.
  for (let p = 0; p < px && count < target; p++)
    if (field[p] > threshold) {
      region[p] = 1;
      count++;
    }
  for (let p = 0; p < px && count < target; p++)
    if (field[p] === threshold) {
      region[p] = 1;
      count++;
    }
  return region;
}

/** A thin curved stroke: a cubic Bezier across part of the image, 1-3 px wide. */
function strokeRegion(size: number, rng: Rng): Uint8Array {
  const region = new Uint8Array(size * size);
  const pt = () => [rng.uniform(0, size), rng.uniform(0, size)];
  const p0 = pt();
  const len = rng.uniform(0.2, 0.8) * size;
  const dir = rng.next() * 2 * Math.PI;
  const p3 = [p0[0] + len * Math.cos(dir), p0[1] + len * Math.sin(dir)];
  const bend = () => rng.uniform(-0.4, 0.4) * len;
  const p1 = [p0[0] + (p3[0] - p0[0]) / 3 + bend(), p0[1] + (p3[1] - p0[1]) / 3 + bend()];
  const p2 = [p0[0] + (2 * (p3[0] - p0[0])) / 3 + bend(), p0[1] + (2 * (p3[1] - p0[1])) / 3 + bend()];
  const radius = rng.uniform(0.5, 1.5);
  const steps = Math.ceil(len * 4);
  const r = Math.ceil(radius);
  for (let s = 0; s <= steps; s++) {
    const t = s / steps;
    const a = (1 - t) ** 3;
    const b = 3 * (1 - t) ** 2 * t;
    const c = 3 * (1 - t) * t * t;
    const d = t ** 3;
    const cx = a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0];
    const cy = a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1];
    for (let y = Math.floor(cy) - r; y <= Math.floor(cy) + r; y++)
      for (let x = Math.floor(cx) - r; x <= Math.floor(cx) + r; x++) {
        if (x < 0 || y < 0 || x >= size || y >= size) continue;
        if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= radius * radius) region[y * size + x] = 1;
      }
  }
  // A stroke that leaves the image at once still marks one pixel, so every anomaly has a region.
  if (!region.includes(1)) {
    const x = Math.min(size - 1, Math.max(0, Math.floor(p0[0])));
    const y = Math.min(size - 1, Math.max(0, Math.floor(p0[1])));
    region[y * size + x] = 1;
  }
  return region;
}

// ---------------------------------------------------------------- sources

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));

/** The full-size image the region is blended with (size x size x 3). */
function anomalySource(
  kind: AnomalyKind,
  clean: Float32Array,
  b: number,
  n: number,
  size: number,
  current: Float32Array,
  rng: Rng,
): Float32Array {
  const per = size * size * 3;
  const imageOf = (i: number) => clean.subarray(i * per, (i + 1) * per);
  switch (kind) {
    case 'self':
      return shifted(imageOf(b), size, rng);
    case 'other': {
      const j = n > 1 ? (b + 1 + rng.int(n - 1)) % n : b;
      return shifted(imageOf(j), size, rng);
    }
    case 'tiles':
      return shuffledTiles(augmented(imageOf(b), size, rng), size, rng);
    case 'texture':
      return texture(size, rng);
    case 'colour': {
      const gain = rng.uniform(0.5, 1.5);
      const shift = [rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4)];
      const out = new Float32Array(per);
      for (let i = 0; i < per; i++) out[i] = clamp01(current[i] * gain + shift[i % 3]);
      return out;
    }
    case 'blur':
      return boxBlur(current, size, 2 + rng.int(4));
    case 'stroke': {
      const style = rng.int(3);
      const colour =
        style === 0
          ? [0.05, 0.05, 0.05].map((v) => v * rng.next())
          : style === 1
            ? [1, 1, 1].map((v) => v - 0.1 * rng.next())
            : [rng.next(), rng.next(), rng.next()];
      const out = new Float32Array(per);
      for (let i = 0; i < per; i++) out[i] = colour[i % 3];
      return out;
    }
  }
}

/** The image shifted by a random offset (wrapping around), flipped horizontally half of the time. */
function shifted(img: Float32Array, size: number, rng: Rng): Float32Array {
  const ox = rng.int(size);
  const oy = rng.int(size);
  const flip = rng.next() < 0.5;
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let sx = (x + ox) % size;
      if (flip) sx = size - 1 - sx;
      const sy = (y + oy) % size;
      const s = (sy * size + sx) * 3;
      const o = (y * size + x) * 3;
      out[o] = img[s];
      out[o + 1] = img[s + 1];
      out[o + 2] = img[s + 2];
    }
  return out;
}

/** A flipped, brightness/contrast-jittered copy. */
function augmented(img: Float32Array, size: number, rng: Rng): Float32Array {
  const hflip = rng.next() < 0.5;
  const vflip = rng.next() < 0.5;
  const contrast = rng.uniform(0.6, 1.4);
  const brightness = rng.uniform(-0.2, 0.2);
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const s = ((vflip ? size - 1 - y : y) * size + (hflip ? size - 1 - x : x)) * 3;
      const o = (y * size + x) * 3;
      for (let k = 0; k < 3; k++) out[o + k] = clamp01((img[s + k] - 0.5) * contrast + 0.5 + brightness);
    }
  return out;
}

/** The image cut into g x g tiles (g in 2..8, dividing size where possible), tiles shuffled. */
function shuffledTiles(img: Float32Array, size: number, rng: Rng): Float32Array {
  const g = 2 + rng.int(7);
  const edges = Array.from({ length: g + 1 }, (_, i) => Math.round((i * size) / g));
  const order = rng.shuffle(Array.from({ length: g * g }, (_, i) => i));
  const out = img.slice();
  for (let t = 0; t < g * g; t++) {
    const ty = Math.floor(t / g);
    const tx = t % g;
    const src = order[t];
    const sy = Math.floor(src / g);
    const sx = src % g;
    const h = Math.min(edges[ty + 1] - edges[ty], edges[sy + 1] - edges[sy]);
    const w = Math.min(edges[tx + 1] - edges[tx], edges[sx + 1] - edges[sx]);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = ((edges[ty] + y) * size + edges[tx] + x) * 3;
        const s = ((edges[sy] + y) * size + edges[sx] + x) * 3;
        out[o] = img[s];
        out[o + 1] = img[s + 1];
        out[o + 2] = img[s + 2];
      }
  }
  return out;
}

/** Procedural textures: Perlin colour noise, stripes or speckle. */
function texture(size: number, rng: Rng): Float32Array {
  const px = size * size;
  const out = new Float32Array(px * 3);
  const c0 = [rng.next(), rng.next(), rng.next()];
  const c1 = [rng.next(), rng.next(), rng.next()];
  const style = rng.int(3);
  if (style === 0) {
    const cell = rng.uniform(2, Math.max(3, size / 4));
    const f = perlinField(size, cell, rng.next() * Math.PI, 2, rng);
    for (let p = 0; p < px; p++) {
      const t = clamp01(0.5 + f[p]);
      for (let k = 0; k < 3; k++) out[p * 3 + k] = c0[k] + t * (c1[k] - c0[k]);
    }
  } else if (style === 1) {
    const angle = rng.next() * Math.PI;
    const period = rng.uniform(3, Math.max(4, size / 4));
    const sharp = rng.next() < 0.5;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const s = Math.sin(((x * Math.cos(angle) + y * Math.sin(angle)) * 2 * Math.PI) / period);
        const t = sharp ? (s > 0 ? 1 : 0) : 0.5 + 0.5 * s;
        const p = y * size + x;
        for (let k = 0; k < 3; k++) out[p * 3 + k] = c0[k] + t * (c1[k] - c0[k]);
      }
  } else {
    const density = rng.uniform(0.05, 0.5);
    for (let p = 0; p < px; p++) {
      const c = rng.next() < density ? c1 : c0;
      for (let k = 0; k < 3; k++) out[p * 3 + k] = clamp01(c[k] + 0.1 * (rng.next() - 0.5));
    }
  }
  return out;
}

/** Separable box blur of radius r (edge pixels clamped). */
function boxBlur(img: Float32Array, size: number, r: number): Float32Array {
  const pass = (src: Float32Array, horizontal: boolean) => {
    const out = new Float32Array(src.length);
    const w = 2 * r + 1;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let k = 0; k < 3; k++) {
          let s = 0;
          for (let d = -r; d <= r; d++) {
            const xx = horizontal ? Math.min(size - 1, Math.max(0, x + d)) : x;
            const yy = horizontal ? y : Math.min(size - 1, Math.max(0, y + d));
            s += src[(yy * size + xx) * 3 + k];
          }
          out[(y * size + x) * 3 + k] = s / w;
        }
    return out;
  };
  return pass(pass(img, true), false);
}

/**
 * Realistic, subtle defects for the real-photo benchmark (`dataset real`), deterministic from an Rng.
 *
 * Every model draws a soft shape S in [0,1] (a stroke, a noise-edged blob) and an appearance (the
 * image as the defect would make it look); the defective image is clean * (1 - w) + appearance * w,
 * w = opacity * S. The mask is exact by construction:
 *   - region R = { S >= MASK_ALPHA }; pixels outside R are byte-identical to the clean image;
 *   - every pixel inside R differs from the clean one by at least MIN_DELTA grey levels in some
 *     channel (pixels where the blend would round to almost no change are nudged by MIN_DELTA).
 * The defective area (|R| / pixels) is kept within [MIN_AREA, MAX_AREA] by redrawing.
 */
import type { Rng } from '../util/rng';

export const REALISTIC_DEFECT_KINDS = ['crack', 'scratch', 'stain', 'oil', 'foreign', 'hole'] as const;
export type RealisticDefectKind = (typeof REALISTIC_DEFECT_KINDS)[number];

export const MASK_ALPHA = 0.25;
export const MIN_DELTA = 2;
export const MIN_AREA = 0.002;
export const MAX_AREA = 0.05;
/** Share of defects drawn "faint" (half strength): low-contrast variants of every kind. */
export const FAINT_PROBABILITY = 0.35;
export const FAINT_STRENGTH = 0.6;
/**
 * Visibility floor: a drawn defect whose mean change inside its mask is below this many grey levels
 * is redrawn (a careful human could not see it; not a fair test).
 */
export const MIN_MEAN_DELTA = 6;
/**
 * Second visibility floor, relative to the texture: the defect's contrast (see DefectParams) must
 * reach this, so that a 6-level change is not "a defect" on grass or gravel whose own grey levels
 * vary by 40. Thin strokes need more than blobs, whose change is spread over an area.
 */
export const MIN_CONTRAST: Record<RealisticDefectKind, number> = {
  crack: 1,
  scratch: 1,
  stain: 0.9,
  oil: 0.9,
  foreign: 0.6,
  hole: 0.8,
};

export interface DefectParams {
  kind: RealisticDefectKind;
  /** 1, or FAINT_STRENGTH for a faint (low-contrast) variant. */
  strength: number;
  /** Masked pixels / all pixels. */
  area: number;
  /** Mean absolute change inside the mask, in grey levels (0-255, mean over channels). */
  meanDelta: number;
  /**
   * Contrast to texture: meanDelta / standard deviation of the clean image's grey level in the
   * defect's bounding box (grown by 8 px). Below ~1 a defect hides in the texture's own variation.
   */
  contrast: number;
  /**
   * Whether both visibility floors were met; false where none of 100 draws reached them (thin strokes
   * on busy textures such as gravel or brick) and the most visible draw was kept.
   */
  floorMet: boolean;
  /** Kind-specific draws (widths, opacities, colours), rounded for the dataset manifest. */
  detail: Record<string, number | string>;
}

export interface DefectResult {
  /** size x size x 3 RGB bytes. */
  image: Uint8Array;
  /** size x size bytes, 0 or 255. */
  mask: Uint8Array;
  params: DefectParams;
}

interface Draft {
  /** Soft shape, size*size. */
  shape: Float32Array;
  /** Blend weight per pixel is opacity * shape. */
  opacity: number;
  /** Appearance of the defect at a pixel (RGB in [0,1]), given the clean pixel. */
  appearance: (i: number, clean: Float32Array) => [number, number, number];
  detail: Record<string, number | string>;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;
const clamp01 = (v: number) => Math.max(0, Math.min(1, v));
const smoothstep = (e0: number, e1: number, x: number) => {
  const t = clamp01((x - e0) / (e1 - e0));
  return t * t * (3 - 2 * t);
};

/** Smooth value noise in [0,1] with a given cell size in pixels (one octave). */
function valueNoise(size: number, cell: number, rng: Rng): Float32Array {
  const g = Math.ceil(size / cell) + 2;
  const grid = new Float32Array(g * g);
  for (let i = 0; i < grid.length; i++) grid[i] = rng.next();
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const gy = y / cell;
    const y0 = Math.floor(gy);
    const ty = smoothstep(0, 1, gy - y0);
    for (let x = 0; x < size; x++) {
      const gx = x / cell;
      const x0 = Math.floor(gx);
      const tx = smoothstep(0, 1, gx - x0);
      const a = grid[y0 * g + x0];
      const b = grid[y0 * g + x0 + 1];
      const c = grid[(y0 + 1) * g + x0];
      const d = grid[(y0 + 1) * g + x0 + 1];
      out[y * size + x] = (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty;
    }
  }
  return out;
}

/** Fractal (3-octave) value noise in [0,1]. */
function fbm(size: number, cell: number, rng: Rng): Float32Array {
  const out = new Float32Array(size * size);
  let amp = 1;
  let total = 0;
  for (let o = 0; o < 3; o++) {
    const n = valueNoise(size, Math.max(1, cell / 2 ** o), rng);
    for (let i = 0; i < out.length; i++) out[i] += amp * n[i];
    total += amp;
    amp *= 0.5;
  }
  for (let i = 0; i < out.length; i++) out[i] /= total;
  return out;
}

/** 3x3 binomial blur (the slight optical blur of a real thin defect). */
function blur3(a: Float32Array, size: number): Float32Array {
  const k = [0.25, 0.5, 0.25];
  const tmp = new Float32Array(a.length);
  const out = new Float32Array(a.length);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let s = 0;
      for (let d = -1; d <= 1; d++) s += k[d + 1] * a[y * size + Math.min(size - 1, Math.max(0, x + d))];
      tmp[y * size + x] = s;
    }
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let s = 0;
      for (let d = -1; d <= 1; d++) s += k[d + 1] * tmp[Math.min(size - 1, Math.max(0, y + d)) * size + x];
      out[y * size + x] = s;
    }
  return out;
}

type Pt = { x: number; y: number; hw: number };

/** Anti-aliased stroke along a polyline with per-point half widths: coverage in [0,1]. */
function strokeShape(points: Pt[], size: number): Float32Array {
  const cov = new Float32Array(size * size);
  for (let s = 0; s + 1 < points.length; s++) {
    const p = points[s];
    const q = points[s + 1];
    const hwMax = Math.max(p.hw, q.hw) + 1;
    const x0 = Math.max(0, Math.floor(Math.min(p.x, q.x) - hwMax));
    const x1 = Math.min(size - 1, Math.ceil(Math.max(p.x, q.x) + hwMax));
    const y0 = Math.max(0, Math.floor(Math.min(p.y, q.y) - hwMax));
    const y1 = Math.min(size - 1, Math.ceil(Math.max(p.y, q.y) + hwMax));
    const dx = q.x - p.x;
    const dy = q.y - p.y;
    const len2 = dx * dx + dy * dy || 1e-9;
    for (let y = y0; y <= y1; y++)
      for (let x = x0; x <= x1; x++) {
        const px = x + 0.5 - p.x;
        const py = y + 0.5 - p.y;
        const t = clamp01((px * dx + py * dy) / len2);
        const d = Math.hypot(px - t * dx, py - t * dy);
        const hw = p.hw + t * (q.hw - p.hw);
        const c = clamp01(hw + 0.5 - d);
        const i = y * size + x;
        if (c > cov[i]) cov[i] = c;
      }
  }
  return cov;
}

/** A random walk that bends a little at every step (cracks). */
function walk(
  rng: Rng,
  x: number,
  y: number,
  angle: number,
  length: number,
  hw0: number,
  size: number,
): Pt[] {
  const pts: Pt[] = [];
  const step = Math.max(0.75, size / 170);
  let a = angle;
  for (let d = 0; d <= length; d += step) {
    pts.push({ x, y, hw: hw0 * (0.6 + 0.5 * rng.next()) });
    a += 0.12 * rng.normal();
    if (rng.next() < 0.04) a += rng.uniform(-0.7, 0.7); // a kink
    x += step * Math.cos(a);
    y += step * Math.sin(a);
  }
  return pts;
}

/** An irregular soft-edged blob: radial falloff distorted by low-frequency noise. */
function blobShape(
  rng: Rng,
  size: number,
  radius: number,
  opts: { aspect?: number; angle?: number; edge: number; wobble: number },
): { shape: Float32Array; cx: number; cy: number } {
  const cx = rng.uniform(0.2, 0.8) * size;
  const cy = rng.uniform(0.2, 0.8) * size;
  const noise = fbm(size, Math.max(2, radius * 0.8), rng);
  const aspect = opts.aspect ?? 1;
  const ang = opts.angle ?? 0;
  const [ca, sa] = [Math.cos(ang), Math.sin(ang)];
  const shape = new Float32Array(size * size);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const u = (dx * ca + dy * sa) / (radius * aspect);
      const v = (-dx * sa + dy * ca) / (radius / aspect);
      const i = y * size + x;
      const r = Math.hypot(u, v) * (1 + opts.wobble * (noise[i] - 0.5) * 2);
      shape[i] = 1 - smoothstep(1 - opts.edge, 1, r);
    }
  return { shape, cx, cy };
}

/** Uneven density inside a blob: shape *= 1 - amount * noise. */
function modulate(shape: Float32Array, noise: Float32Array, amount: number): void {
  for (let i = 0; i < shape.length; i++) shape[i] *= 1 - amount * noise[i];
}

const lum = (c: Float32Array, i: number) => 0.299 * c[i * 3] + 0.587 * c[i * 3 + 1] + 0.114 * c[i * 3 + 2];

function draftDefect(
  kind: RealisticDefectKind,
  rng: Rng,
  size: number,
  strength: number,
  foreign: Float32Array | null,
): Draft {
  const n = size * size;
  if (kind === 'crack') {
    const hw = rng.uniform(0.45, 1.3);
    const length = rng.uniform(0.25, 0.55) * size;
    const main = walk(
      rng,
      rng.uniform(0.15, 0.85) * size,
      rng.uniform(0.15, 0.85) * size,
      rng.uniform(0, 2 * Math.PI),
      length,
      hw,
      size,
    );
    let pts = [main];
    const branch = rng.next() < 0.5;
    if (branch) {
      const at = main[Math.floor(main.length * rng.uniform(0.3, 0.7))];
      const ang = rng.uniform(0, 2 * Math.PI);
      pts = [main, walk(rng, at.x, at.y, ang, length * rng.uniform(0.25, 0.5), hw * 0.7, size)];
    }
    const shape = new Float32Array(n);
    for (const p of pts) {
      const s = strokeShape(p, size);
      for (let i = 0; i < n; i++) shape[i] = Math.max(shape[i], s[i]);
    }
    const depth = rng.uniform(0.3, 0.75) * strength;
    return {
      shape: blur3(shape, size),
      opacity: 1,
      appearance: (i, c) => [c[i * 3] * (1 - depth), c[i * 3 + 1] * (1 - depth), c[i * 3 + 2] * (1 - depth)],
      detail: { halfWidthPx: r3(hw), lengthPx: r3(length), branch: branch ? 1 : 0, darken: r3(depth) },
    };
  }
  if (kind === 'scratch') {
    const hw = rng.uniform(0.4, 0.9);
    const length = rng.uniform(0.2, 0.6) * size;
    const x0 = rng.uniform(0.15, 0.85) * size;
    const y0 = rng.uniform(0.15, 0.85) * size;
    const a = rng.uniform(0, 2 * Math.PI);
    const bend = rng.uniform(-0.35, 0.35) * length;
    const [x3, y3] = [x0 + length * Math.cos(a), y0 + length * Math.sin(a)];
    const [nx, ny] = [-Math.sin(a), Math.cos(a)];
    const c1 = [x0 + (x3 - x0) / 3 + nx * bend, y0 + (y3 - y0) / 3 + ny * bend];
    const c2 = [x0 + (2 * (x3 - x0)) / 3 + nx * bend * 0.6, y0 + (2 * (y3 - y0)) / 3 + ny * bend * 0.6];
    const pts: Pt[] = [];
    const steps = Math.ceil(length / 0.75);
    for (let s = 0; s <= steps; s++) {
      const t = s / steps;
      const u = 1 - t;
      const bx = u * u * u * x0 + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t * t * t * x3;
      const by = u * u * u * y0 + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t * t * t * y3;
      // Tapered ends, like a real scratch.
      pts.push({ x: bx, y: by, hw: hw * (0.35 + 0.65 * Math.sin(Math.PI * t)) });
    }
    const lighter = rng.next() < 0.6;
    const amp = rng.uniform(0.12, 0.45) * strength;
    return {
      shape: blur3(strokeShape(pts, size), size),
      opacity: 1,
      appearance: (i, c) => {
        const f = (v: number) => (lighter ? v + (1 - v) * amp : v * (1 - amp));
        return [f(c[i * 3]), f(c[i * 3 + 1]), f(c[i * 3 + 2])];
      },
      detail: {
        halfWidthPx: r3(hw),
        lengthPx: r3(length),
        direction: lighter ? 'lighter' : 'darker',
        amount: r3(amp),
      },
    };
  }
  if (kind === 'stain') {
    const area = rng.uniform(0.006, 0.035);
    const radius = Math.sqrt((area * n) / Math.PI);
    const { shape } = blobShape(rng, size, radius, {
      aspect: rng.uniform(0.8, 1.25),
      angle: rng.uniform(0, Math.PI),
      edge: rng.uniform(0.35, 0.6),
      wobble: 0.35,
    });
    modulate(shape, fbm(size, Math.max(2, radius / 2), rng), 0.35);
    const palette: [string, [number, number, number]][] = [
      ['coffee', [0.62, 0.45, 0.28]],
      ['rust', [0.75, 0.45, 0.3]],
      ['water', [0.8, 0.8, 0.8]],
      ['yellowing', [0.95, 0.85, 0.55]],
      ['deposit', [0.85, 0.84, 0.8]],
    ];
    const [name, tint] = palette[rng.int(palette.length)];
    const opacity = rng.uniform(0.15, 0.5) * strength;
    const ring = rng.next() < 0.4;
    // Coffee-ring: pigment gathers at the rim.
    if (ring) for (let i = 0; i < n; i++) shape[i] = Math.min(1, shape[i] + 2.4 * shape[i] * (1 - shape[i]));
    return {
      shape,
      opacity,
      // Dyes absorb (multiplicative tint); a whitish deposit is a veil (towards its colour).
      appearance: (i, c) =>
        name === 'deposit'
          ? ([0, 1, 2].map((k) => c[i * 3 + k] + (tint[k] - c[i * 3 + k]) * 0.7) as [number, number, number])
          : [clamp01(c[i * 3] * tint[0]), clamp01(c[i * 3 + 1] * tint[1]), clamp01(c[i * 3 + 2] * tint[2])],
      detail: { colour: name, opacity: r3(opacity), radiusPx: r3(radius), ring: ring ? 1 : 0 },
    };
  }
  if (kind === 'oil') {
    const area = rng.uniform(0.008, 0.04);
    const radius = Math.sqrt((area * n) / Math.PI);
    const { shape } = blobShape(rng, size, radius, {
      aspect: rng.uniform(1.2, 2.2),
      angle: rng.uniform(0, Math.PI),
      edge: rng.uniform(0.4, 0.7),
      wobble: 0.4,
    });
    modulate(shape, fbm(size, Math.max(2, radius / 2), rng), 0.4);
    const gamma = 1 + rng.uniform(0.3, 0.9) * strength;
    const sat = 1 + rng.uniform(0.1, 0.4) * strength;
    const opacity = rng.uniform(0.35, 0.7) * strength;
    return {
      shape,
      opacity,
      appearance: (i, c) => {
        const l = lum(c, i);
        return [0, 1, 2].map((k) => clamp01(l + (c[i * 3 + k] - l) * sat) ** gamma) as [
          number,
          number,
          number,
        ];
      },
      detail: { gamma: r3(gamma), saturation: r3(sat), opacity: r3(opacity), radiusPx: r3(radius) },
    };
  }
  if (kind === 'foreign') {
    if (!foreign) throw new Error('foreign defects need a donor texture');
    const area = rng.uniform(0.004, 0.03);
    const radius = Math.sqrt((area * n) / Math.PI);
    const { shape } = blobShape(rng, size, radius, {
      aspect: rng.uniform(0.6, 1.6),
      angle: rng.uniform(0, Math.PI),
      edge: rng.uniform(0.1, 0.3),
      wobble: 0.5,
    });
    const match = rng.uniform(0.3, 0.8);
    const opacity = rng.uniform(0.7, 1) * (strength < 1 ? 0.7 : 1);
    // Donor brightness pulled part-way towards the local brightness: foreign, but not a bright label.
    const cache: { shift: number[] | null } = { shift: null };
    return {
      shape,
      opacity,
      appearance: (i, c) => {
        if (!cache.shift) {
          const s = [0, 0, 0];
          const m = [0, 0, 0];
          let w = 0;
          for (let j = 0; j < n; j++) {
            if (shape[j] < MASK_ALPHA) continue;
            w++;
            for (let k = 0; k < 3; k++) {
              s[k] += c[j * 3 + k];
              m[k] += foreign[j * 3 + k];
            }
          }
          cache.shift = s.map((v, k) => (w ? (match * (v - m[k])) / w : 0));
        }
        const sh = cache.shift;
        return [0, 1, 2].map((k) => clamp01(foreign[i * 3 + k] + sh[k])) as [number, number, number];
      },
      detail: { radiusPx: r3(radius), brightnessMatch: r3(match), opacity: r3(opacity) },
    };
  }
  // hole: a small dent or pit, dark inside with a highlight on the rim facing the light.
  const area = rng.uniform(0.0025, 0.012);
  const radius = Math.sqrt((area * n) / Math.PI);
  const { shape, cx, cy } = blobShape(rng, size, radius, {
    aspect: rng.uniform(0.8, 1.25),
    angle: rng.uniform(0, Math.PI),
    edge: 0.5,
    wobble: 0.3,
  });
  const depth = rng.uniform(0.3, 0.65) * strength;
  const light = rng.uniform(0, 2 * Math.PI);
  const [lx, ly] = [Math.cos(light), Math.sin(light)];
  return {
    shape,
    opacity: 1,
    appearance: (i, c) => {
      const x = (i % size) + 0.5 - cx;
      const y = Math.floor(i / size) + 0.5 - cy;
      const r = Math.hypot(x, y) || 1;
      // Far wall (facing the light) lit, near wall in shadow.
      const facing = -(x * lx + y * ly) / r;
      const bowl = 1 - Math.min(1, r / radius);
      const dark = depth * (0.55 + 0.45 * bowl) * (1 - 0.5 * Math.max(0, facing));
      const lit = 0.25 * strength * Math.max(0, facing) * (1 - bowl);
      return [0, 1, 2].map((k) => clamp01(c[i * 3 + k] * (1 - dark) + lit * (1 - c[i * 3 + k]))) as [
        number,
        number,
        number,
      ];
    },
    detail: { radiusPx: r3(radius), depth: r3(depth), lightAngle: r3(light) },
  };
}

/** Blends a draft into the clean bytes and derives the exact mask (see the module comment). */
function render(
  draft: Draft,
  clean: Uint8Array,
  cleanF: Float32Array,
  size: number,
): { image: Uint8Array; mask: Uint8Array; area: number; meanDelta: number } {
  const n = size * size;
  const image = new Uint8Array(clean);
  const mask = new Uint8Array(n);
  let count = 0;
  let deltaSum = 0;
  for (let i = 0; i < n; i++) {
    const s = draft.shape[i];
    if (s < MASK_ALPHA) continue;
    const w = draft.opacity * s;
    const app = draft.appearance(i, cleanF);
    const out = [0, 0, 0];
    let maxD = 0;
    let signSum = 0;
    for (let k = 0; k < 3; k++) {
      const v = Math.round(255 * ((1 - w) * cleanF[i * 3 + k] + w * app[k]));
      out[k] = Math.max(0, Math.min(255, v));
      const d = out[k] - clean[i * 3 + k];
      signSum += app[k] - cleanF[i * 3 + k];
      if (Math.abs(d) > maxD) maxD = Math.abs(d);
    }
    if (maxD < MIN_DELTA) {
      // Nudge in the defect's direction (or away from the nearer end of the range).
      let dir = signSum > 0 ? 1 : signSum < 0 ? -1 : lum(cleanF, i) > 0.5 ? -1 : 1;
      const fits = (d: number) =>
        [0, 1, 2].some(
          (k) => clean[i * 3 + k] + d * MIN_DELTA <= 255 && clean[i * 3 + k] + d * MIN_DELTA >= 0,
        );
      if (!fits(dir)) dir = -dir;
      for (let k = 0; k < 3; k++) out[k] = Math.max(0, Math.min(255, clean[i * 3 + k] + dir * MIN_DELTA));
    }
    let sumD = 0;
    for (let k = 0; k < 3; k++) {
      image[i * 3 + k] = out[k];
      sumD += Math.abs(out[k] - clean[i * 3 + k]);
    }
    mask[i] = 255;
    count++;
    deltaSum += sumD / 3;
  }
  return { image, mask, area: count / n, meanDelta: count ? deltaSum / count : 0 };
}

/** Std of the grey level (0-255) in the mask's bounding box grown by 8 px. */
function localStd(c: Float32Array, mask: Uint8Array, size: number): number {
  let [x0, y0, x1, y1] = [size, size, -1, -1];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const x = i % size;
    const y = Math.floor(i / size);
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  if (x1 < 0) return 0;
  let s = 0;
  let s2 = 0;
  let k = 0;
  for (let y = Math.max(0, y0 - 8); y <= Math.min(size - 1, y1 + 8); y++)
    for (let x = Math.max(0, x0 - 8); x <= Math.min(size - 1, x1 + 8); x++) {
      const v = 255 * lum(c, y * size + x);
      s += v;
      s2 += v * v;
      k++;
    }
  const m = s / k;
  return Math.sqrt(Math.max(0, s2 / k - m * m));
}

/**
 * Paints one defect of `kind` into `clean` (size x size x 3 RGB bytes, not modified). `foreign`
 * (same layout) is the donor texture for `foreign` defects. Draws from `rng` only.
 */
export function makeRealisticDefect(
  kind: RealisticDefectKind,
  clean: Uint8Array,
  size: number,
  rng: Rng,
  foreign: Uint8Array | null = null,
): DefectResult {
  if (clean.length !== size * size * 3)
    throw new Error(`expected ${size}x${size}x3 bytes, got ${clean.length}`);
  const cleanF = Float32Array.from(clean, (v) => v / 255);
  const foreignF = foreign ? Float32Array.from(foreign, (v) => v / 255) : null;
  // Best in-range draw so far, should none reach the visibility floors (very dark or busy crops).
  type Cand = { r: ReturnType<typeof render>; draft: Draft; strength: number; contrast: number };
  let best: Cand | null = null;
  const result = (b: Cand, floorMet: boolean): DefectResult => ({
    image: b.r.image,
    mask: b.r.mask,
    params: {
      kind,
      strength: b.strength,
      area: r3(b.r.area * 100) / 100,
      meanDelta: Math.round(b.r.meanDelta * 10) / 10,
      contrast: Math.round(b.contrast * 100) / 100,
      floorMet,
      detail: { ...b.draft.detail, ...(b.draft.opacity < 1 ? { opacity: r3(b.draft.opacity) } : {}) },
    },
  });
  for (let attempt = 0; attempt < 100; attempt++) {
    const strength = rng.next() < FAINT_PROBABILITY ? FAINT_STRENGTH : 1;
    const draft = draftDefect(kind, rng, size, strength, foreignF);
    let r = render(draft, clean, cleanF, size);
    if (r.area < MIN_AREA || r.area > MAX_AREA) continue;
    const std = Math.max(1, localStd(cleanF, r.mask, size));
    const need = Math.max(MIN_MEAN_DELTA, MIN_CONTRAST[kind] * std);
    // Too faint to see: raise the opacity (up to 1) to reach the floor, keeping the shape.
    for (let k = 0; k < 3 && r.meanDelta < need && draft.opacity < 1; k++) {
      draft.opacity = Math.min(1, (draft.opacity * 1.15 * need) / Math.max(0.5, r.meanDelta));
      r = render(draft, clean, cleanF, size);
    }
    const cand = { r, draft, strength, contrast: r.meanDelta / std };
    if (r.meanDelta >= need) return result(cand, true);
    if (!best || cand.contrast > best.contrast) best = cand;
  }
  if (best) return result(best, false);
  throw new Error(
    `could not draw a ${kind} defect of ${MIN_AREA * 100}-${MAX_AREA * 100}% area at ${size} px`,
  );
}

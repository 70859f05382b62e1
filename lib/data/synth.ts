/**
 * Deterministic synthetic dataset in the MVTec AD layout, for demos and tests: textures (one
 * grayscale) and objects, each with several defect types and exact masks. Defects are high-contrast
 * on purpose, so that a small autoencoder trained for a few epochs can find them.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { sha256 } from '../util/atomic';
import { UserError } from '../util/errors';
import { Rng } from '../util/rng';

type Rgb = [number, number, number];

/** A float RGB image in [0,1] plus which object part each pixel belongs to (0: background). */
interface Scene {
  img: Float32Array;
  /** Same scene with every object pixel replaced by background (for `missing` defects). */
  bg: Float32Array;
  part: Uint8Array;
}

type DefectKind = 'scratch' | 'hole' | 'stain' | 'missing';

interface CategorySpec {
  kind: 'texture' | 'object';
  grayscale: boolean;
  defects: DefectKind[];
  stainColor: Rgb;
  render(rng: Rng, size: number): Scene;
}

export const SYNTH_GENERATOR = 'anomaly-spotter-synth/1';

function blankScene(size: number): Scene {
  return {
    img: new Float32Array(size * size * 3),
    bg: new Float32Array(size * size * 3),
    part: new Uint8Array(size * size),
  };
}

function setPx(buf: Float32Array, i: number, c: Rgb): void {
  buf[i * 3] = c[0];
  buf[i * 3 + 1] = c[1];
  buf[i * 3 + 2] = c[2];
}

function renderTexture(size: number, color: (x: number, y: number) => Rgb): Scene {
  const s = blankScene(size);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) setPx(s.img, y * size + x, color(x, y));
  s.bg.set(s.img);
  return s;
}

const TAU = 2 * Math.PI;

function weave(rng: Rng, size: number): Scene {
  const p = size / 16;
  const ox = rng.uniform(0, p);
  const oy = rng.uniform(0, p);
  return renderTexture(size, (x, y) => {
    const v = 0.5 + 0.5 * Math.sin((TAU * (x + ox)) / p) * Math.sin((TAU * (y + oy)) / p);
    const k = 0.75 + 0.25 * v;
    return [0.78 * k, 0.62 * k, 0.4 * k];
  });
}

function marble(rng: Rng, size: number): Scene {
  const a = rng.uniform(0.5, 0.7);
  const ph = rng.uniform(0, TAU);
  const ph2 = rng.uniform(0, TAU);
  return renderTexture(size, (x, y) => {
    const u = (x * Math.cos(a) + y * Math.sin(a)) / size;
    const v = 0.5 + 0.5 * Math.sin(TAU * 3 * u + 1.5 * Math.sin((TAU * 2 * y) / size + ph2) + ph);
    return [0.55 + 0.3 * v, 0.6 + 0.25 * v, 0.7 + 0.2 * v];
  });
}

function mesh(rng: Rng, size: number): Scene {
  const p = size / 8;
  const w = Math.max(1, size / 64);
  const ox = rng.uniform(0, p);
  const oy = rng.uniform(0, p);
  return renderTexture(size, (x, y) => {
    const onLine = (x + ox) % p < w || (y + oy) % p < w;
    const g = onLine ? 0.8 : 0.35;
    return [g, g, g];
  });
}

function washer(rng: Rng, size: number): Scene {
  const s = blankScene(size);
  const cx = size / 2 + rng.uniform(-1, 1) * (size / 64);
  const cy = size / 2 + rng.uniform(-1, 1) * (size / 64);
  const ro = 0.36 * size;
  const ri = 0.16 * size;
  const bgc: Rgb = [0.2, 0.24, 0.3];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const r = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
      setPx(s.bg, i, bgc);
      if (r <= ro && r >= ri) {
        const shade = 0.85 + 0.15 * Math.cos(Math.atan2(y - cy, x - cx) - 0.8);
        setPx(s.img, i, [0.78 * shade, 0.76 * shade, 0.7 * shade]);
        s.part[i] = 1;
      } else {
        setPx(s.img, i, bgc);
      }
    }
  }
  return s;
}

/** A chip with pins on its left side only: mirrored or rotated chips are not "good". */
function chip(rng: Rng, size: number): Scene {
  const s = blankScene(size);
  const dx = Math.round(rng.uniform(-1, 1) * (size / 64));
  const dy = Math.round(rng.uniform(-1, 1) * (size / 64));
  const bgc: Rgb = [0.1, 0.42, 0.2];
  const inRect = (x: number, y: number, x0: number, y0: number, w: number, h: number) =>
    x >= x0 * size + dx && x < (x0 + w) * size + dx && y >= y0 * size + dy && y < (y0 + h) * size + dy;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      setPx(s.bg, i, bgc);
      setPx(s.img, i, bgc);
      if (inRect(x, y, 0.32, 0.25, 0.4, 0.5)) {
        s.part[i] = 1;
        const marker = Math.hypot(x - 0.39 * size - dx, y - 0.33 * size - dy) < size * 0.035;
        setPx(s.img, i, marker ? [0.9, 0.9, 0.9] : [0.14, 0.14, 0.16]);
        continue;
      }
      for (let k = 0; k < 3; k++) {
        if (inRect(x, y, 0.2, 0.3 + k * 0.16, 0.12, 0.07)) {
          s.part[i] = 2 + k;
          setPx(s.img, i, [0.82, 0.82, 0.85]);
        }
      }
    }
  }
  return s;
}

export const SYNTH_CATEGORIES: Record<string, CategorySpec> = {
  weave: {
    kind: 'texture',
    grayscale: false,
    defects: ['scratch', 'hole', 'stain'],
    stainColor: [0.75, 0.1, 0.55],
    render: weave,
  },
  marble: {
    kind: 'texture',
    grayscale: false,
    defects: ['scratch', 'hole', 'stain'],
    stainColor: [0.85, 0.45, 0.05],
    render: marble,
  },
  mesh: {
    kind: 'texture',
    grayscale: true,
    defects: ['scratch', 'hole', 'stain'],
    stainColor: [1, 1, 1],
    render: mesh,
  },
  washer: {
    kind: 'object',
    grayscale: false,
    defects: ['scratch', 'hole', 'stain', 'missing'],
    stainColor: [0.8, 0.2, 0.1],
    render: washer,
  },
  chip: {
    kind: 'object',
    grayscale: false,
    defects: ['scratch', 'stain', 'missing'],
    stainColor: [0.95, 0.85, 0.1],
    render: chip,
  },
};

/** A defect centre: anywhere on textures, on the object body for objects. */
function defectCenter(rng: Rng, scene: Scene, size: number, spec: CategorySpec): [number, number] {
  for (let tries = 0; tries < 10_000; tries++) {
    const x = rng.uniform(0.2, 0.8) * size;
    const y = rng.uniform(0.2, 0.8) * size;
    if (spec.kind === 'texture' || scene.part[Math.floor(y) * size + Math.floor(x)] === 1) return [x, y];
  }
  return [size / 2, size / 2];
}

function luminance(img: Float32Array, i: number): number {
  return 0.299 * img[i * 3] + 0.587 * img[i * 3 + 1] + 0.114 * img[i * 3 + 2];
}

/** Paints one defect into scene.img; returns its exact mask (0|1). */
function paintDefect(kind: DefectKind, rng: Rng, scene: Scene, size: number, spec: CategorySpec): Uint8Array {
  const mask = new Uint8Array(size * size);
  const [cx, cy] = defectCenter(rng, scene, size, spec);
  const paint = (inside: (x: number, y: number, i: number) => boolean, color: (i: number) => Rgb) => {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        if (!inside(x + 0.5, y + 0.5, i)) continue;
        setPx(scene.img, i, color(i));
        mask[i] = 1;
      }
    }
  };
  if (kind === 'scratch') {
    const ang = rng.uniform(0, Math.PI);
    const half = rng.uniform(0.12, 0.2) * size;
    const hw = Math.max(0.75, size / 100);
    const [ux, uy] = [Math.cos(ang), Math.sin(ang)];
    const ci = Math.floor(cy) * size + Math.floor(cx);
    const ink: Rgb = luminance(scene.img, ci) > 0.5 ? [0.05, 0.05, 0.05] : [0.97, 0.97, 0.97];
    paint(
      (x, y) => {
        const t = (x - cx) * ux + (y - cy) * uy;
        const d = Math.abs(-(x - cx) * uy + (y - cy) * ux);
        return Math.abs(t) <= half && d <= hw;
      },
      () => ink,
    );
  } else if (kind === 'hole') {
    const r = rng.uniform(0.05, 0.08) * size;
    paint(
      (x, y) => Math.hypot(x - cx, y - cy) <= r,
      () => [0.02, 0.02, 0.02],
    );
  } else if (kind === 'stain') {
    const rx = rng.uniform(0.06, 0.1) * size;
    const ry = rng.uniform(0.04, 0.08) * size;
    const c = spec.stainColor;
    paint(
      (x, y) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1,
      (i) => [0, 1, 2].map((k) => 0.2 * scene.img[i * 3 + k] + 0.8 * c[k]) as Rgb,
    );
  } else {
    paintMissing(rng, scene, size, mask);
  }
  return mask;
}

/** Removes one small part (a pin) if the object has any, else a wedge of its body. */
function paintMissing(rng: Rng, scene: Scene, size: number, mask: Uint8Array): void {
  const parts = [...new Set(scene.part)].filter((p) => p >= 2);
  let take: (x: number, y: number, i: number) => boolean;
  if (parts.length > 0) {
    const victim = parts[rng.int(parts.length)];
    take = (_x, _y, i) => scene.part[i] === victim;
  } else {
    const a0 = rng.uniform(-Math.PI, Math.PI);
    const width = rng.uniform(0.6, 1.0);
    take = (x, y, i) => {
      if (scene.part[i] !== 1) return false;
      const a = Math.atan2(y - size / 2, x - size / 2);
      const d = (((a - a0) % TAU) + TAU) % TAU;
      return d <= width;
    };
  }
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      if (!take(x + 0.5, y + 0.5, i)) continue;
      for (let k = 0; k < 3; k++) scene.img[i * 3 + k] = scene.bg[i * 3 + k];
      mask[i] = 1;
    }
  }
}

/** Sensor noise on every image, so that "good" is a distribution, not one picture. */
function toBytes(img: Float32Array, rng: Rng, grayscale: boolean): { data: Uint8Array; channels: 1 | 3 } {
  const px = img.length / 3;
  const channels = grayscale ? 1 : 3;
  const data = new Uint8Array(px * channels);
  for (let i = 0; i < px; i++) {
    const n = 0.015 * rng.normal();
    if (grayscale) {
      data[i] = clampByte(luminance(img, i) + n);
    } else {
      for (let k = 0; k < 3; k++) data[i * 3 + k] = clampByte(img[i * 3 + k] + n);
    }
  }
  return { data, channels };
}

const clampByte = (v: number) => Math.max(0, Math.min(255, Math.round(v * 255)));

async function writePng(path: string, data: Uint8Array, size: number, channels: 1 | 3): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const png = await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
    raw: { width: size, height: size, channels },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
  // Plain write: the whole tree is staged in a temp folder and published by one rename.
  await writeFile(path, png);
}

export interface SynthOptions {
  size?: number;
  seed?: number;
  trainGood?: number;
  testGood?: number;
  perDefect?: number;
  /** Subset of SYNTH_CATEGORIES (default: all). */
  categories?: string[];
}

export interface SynthSummary {
  generator: string;
  size: number;
  seed: number;
  categories: Record<
    string,
    { grayscale: boolean; trainGood: number; testGood: number; defects: Record<string, number> }
  >;
}

const name3 = (i: number) => String(i).padStart(3, '0');

async function writeCategory(
  dir: string,
  cat: string,
  spec: CategorySpec,
  o: Required<SynthOptions>,
): Promise<SynthSummary['categories'][string]> {
  const rng = new Rng(Number.parseInt(sha256(`${o.seed}:${cat}`).slice(0, 8), 16));
  const good = async (path: string) => {
    const { data, channels } = toBytes(spec.render(rng, o.size).img, rng, spec.grayscale);
    await writePng(path, data, o.size, channels);
  };
  for (let i = 0; i < o.trainGood; i++) await good(join(dir, cat, 'train', 'good', `${name3(i)}.png`));
  for (let i = 0; i < o.testGood; i++) await good(join(dir, cat, 'test', 'good', `${name3(i)}.png`));
  const defects: Record<string, number> = {};
  for (const kind of spec.defects) {
    for (let i = 0; i < o.perDefect; i++) {
      const scene = spec.render(rng, o.size);
      const mask = paintDefect(kind, rng, scene, o.size, spec);
      const { data, channels } = toBytes(scene.img, rng, spec.grayscale);
      await writePng(join(dir, cat, 'test', kind, `${name3(i)}.png`), data, o.size, channels);
      await writePng(
        join(dir, cat, 'ground_truth', kind, `${name3(i)}_mask.png`),
        mask.map((m) => m * 255),
        o.size,
        1,
      );
    }
    defects[kind] = o.perDefect;
  }
  return { grayscale: spec.grayscale, trainGood: o.trainGood, testGood: o.testGood, defects };
}

function withDefaults(opts: SynthOptions): Required<SynthOptions> {
  const o = {
    size: 128,
    seed: 0,
    trainGood: 30,
    testGood: 8,
    perDefect: 4,
    categories: Object.keys(SYNTH_CATEGORIES),
    ...opts,
  };
  for (const c of o.categories) {
    if (!SYNTH_CATEGORIES[c]) {
      throw new UserError(
        'INVALID_ARGUMENT',
        `unknown synthetic category "${c}" (known: ${Object.keys(SYNTH_CATEGORIES).join(', ')})`,
      );
    }
  }
  if (!Number.isInteger(o.size) || o.size < 16)
    throw new UserError('INVALID_ARGUMENT', `--size: expected an integer >= 16, got ${o.size}`);
  return o;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Generates the dataset into a temp folder next to `out` and renames it into place, so `out` is
 * either absent or complete. Returns false (and leaves `out` alone) if `out` already exists.
 */
export async function synthesizeDataset(out: string, opts: SynthOptions = {}): Promise<boolean> {
  const o = withDefaults(opts);
  if (await exists(out)) return false;
  const staging = join(
    dirname(out),
    `.${basename(out)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  try {
    const summary: SynthSummary = { generator: SYNTH_GENERATOR, size: o.size, seed: o.seed, categories: {} };
    for (const cat of o.categories)
      summary.categories[cat] = await writeCategory(staging, cat, SYNTH_CATEGORIES[cat], o);
    await writeFile(join(staging, 'dataset.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await rename(staging, out);
    return true;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(out))) return false; // another process won
    throw err;
  }
}

/**
 * The realistic development benchmark (`dataset real`): crops of real texture photographs in the
 * MVTec AD layout, with subtle synthetic defects and exact masks (lib/data/realistic-defects).
 *
 * Train crops come from the upper half of each photo's region, test crops (good and defective)
 * from the lower half; crops are taken at random positions with random flips (and quarter turns
 * for isotropic textures), and resized to `size` when the category's scale asks for it. Good and
 * defective test images go through exactly the same steps; only the defect differs.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { sha256 } from '../util/atomic';
import { UserError } from '../util/errors';
import { Rng } from '../util/rng';
import {
  type PhotoInfo,
  type PhotoSource,
  REAL_CATEGORIES,
  type RealCategorySpec,
  ufoaiSource,
} from './real-sources';
import {
  type DefectParams,
  MASK_ALPHA,
  MAX_AREA,
  MIN_AREA,
  MIN_DELTA,
  makeRealisticDefect,
  REALISTIC_DEFECT_KINDS,
  type RealisticDefectKind,
} from './realistic-defects';

export const REAL_GENERATOR = 'anomaly-spotter-real/1';
/** Share of each photo region (its lower part) reserved for test crops. */
export const TEST_FRACTION = 0.5;

export interface RealBenchOptions {
  size?: number;
  seed?: number;
  trainGood?: number;
  testGood?: number;
  perDefect?: number;
  categories?: string[];
  defects?: RealisticDefectKind[];
  /** Default: the installed Debian package ufoai-textures. */
  source?: PhotoSource;
  /** Default: REAL_CATEGORIES. */
  catalog?: Record<string, RealCategorySpec>;
  onProgress?: (message: string) => void;
}

interface Photo {
  file: string;
  data: Uint8Array;
  width: number;
  height: number;
  region: [number, number, number, number];
}

interface CropRecord {
  photo: string;
  split: 'train' | 'test';
  x: number;
  y: number;
  side: number;
  /** 0-7: bit 0 horizontal flip, bit 1 vertical flip, bit 2 transpose. */
  orientation: number;
}

interface ImageEntry extends CropRecord {
  file: string;
  mask?: string;
  defect?: DefectParams & { donor?: CropRecord & { category: string } };
}

async function decodePhoto(
  file: string,
  buf: Buffer,
  region?: [number, number, number, number],
): Promise<Photo> {
  const { data, info } = await sharp(buf)
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  let rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (info.channels === 1)
    rgb = Uint8Array.from({ length: info.width * info.height * 3 }, (_, i) => data[Math.floor(i / 3)]);
  else if (info.channels !== 3) throw new Error(`${file}: unexpected ${info.channels} channels`);
  const r = region ?? [0, 0, info.width, info.height];
  if (r[0] < 0 || r[1] < 0 || r[0] + r[2] > info.width || r[1] + r[3] > info.height)
    throw new Error(`${file}: region ${r.join(',')} outside ${info.width}x${info.height}`);
  return { file, data: rgb, width: info.width, height: info.height, region: r };
}

/** The train (upper) or test (lower) part of a photo's region. */
function splitRegion(p: Photo, split: 'train' | 'test'): [number, number, number, number] {
  const [x, y, w, h] = p.region;
  const trainH = Math.round(h * (1 - TEST_FRACTION));
  return split === 'train' ? [x, y, w, trainH] : [x, y + trainH, w, h - trainH];
}

function orient(src: Uint8Array, n: number, o: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      let sx = o & 1 ? n - 1 - x : x;
      let sy = o & 2 ? n - 1 - y : y;
      if (o & 4) [sx, sy] = [sy, sx];
      const d = (y * n + x) * 3;
      const s = (sy * n + sx) * 3;
      out[d] = src[s];
      out[d + 1] = src[s + 1];
      out[d + 2] = src[s + 2];
    }
  return out;
}

async function cropAt(p: Photo, c: CropRecord, size: number): Promise<Uint8Array> {
  const side = c.side;
  const raw = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    const s = ((c.y + y) * p.width + c.x) * 3;
    raw.set(p.data.subarray(s, s + side * 3), y * side * 3);
  }
  let img: Uint8Array = raw;
  if (side !== size) {
    const buf = await sharp(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), {
      raw: { width: side, height: side, channels: 3 },
    })
      .resize(size, size, { kernel: 'lanczos3' })
      .raw()
      .toBuffer();
    img = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  return orient(img, size, c.orientation);
}

function drawCrop(
  rng: Rng,
  photos: Photo[],
  spec: RealCategorySpec,
  split: 'train' | 'test',
  size: number,
): CropRecord {
  const p = photos[rng.int(photos.length)];
  const [rx, ry, rw, rh] = splitRegion(p, split);
  const side = Math.min(Math.round(size * spec.scale), rw, rh);
  return {
    photo: p.file,
    split,
    x: rx + rng.int(rw - side + 1),
    y: ry + rng.int(rh - side + 1),
    side,
    orientation: spec.rotate ? rng.int(8) : rng.int(4),
  };
}

async function writePng(path: string, data: Uint8Array, size: number, channels: 1 | 3): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const png = await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
    raw: { width: size, height: size, channels },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
  await writeFile(path, png);
}

const name3 = (i: number) => String(i).padStart(3, '0');

function withDefaults(opts: RealBenchOptions) {
  const catalog = opts.catalog ?? REAL_CATEGORIES;
  const o = {
    size: opts.size ?? 256,
    seed: opts.seed ?? 1,
    trainGood: opts.trainGood ?? 60,
    testGood: opts.testGood ?? 15,
    perDefect: opts.perDefect ?? 8,
    defects: opts.defects ?? [...REALISTIC_DEFECT_KINDS],
    categories: opts.categories ?? Object.keys(catalog),
    catalog,
    onProgress: opts.onProgress,
  };
  for (const c of o.categories)
    if (!catalog[c])
      throw new UserError(
        'INVALID_ARGUMENT',
        `unknown real-benchmark category "${c}" (known: ${Object.keys(catalog).join(', ')})`,
      );
  for (const d of o.defects)
    if (!REALISTIC_DEFECT_KINDS.includes(d))
      throw new UserError(
        'INVALID_ARGUMENT',
        `unknown defect "${d}" (known: ${REALISTIC_DEFECT_KINDS.join(', ')})`,
      );
  if (!Number.isInteger(o.size) || o.size < 16)
    throw new UserError('INVALID_ARGUMENT', `--size: expected an integer >= 16, got ${o.size}`);
  return o;
}

type Resolved = ReturnType<typeof withDefaults>;

async function writeCategory(
  dir: string,
  cat: string,
  photosByCat: Map<string, Photo[]>,
  o: Resolved,
  progress: (done: number) => void,
) {
  const spec = o.catalog[cat];
  const photos = photosByCat.get(cat)!;
  const donors = [...photosByCat.keys()].filter((c) => c !== cat);
  const rng = new Rng(Number.parseInt(sha256(`${o.seed}:real:${cat}`).slice(0, 8), 16));
  const images: ImageEntry[] = [];
  let done = 0;
  const good = async (split: 'train' | 'test', rel: string) => {
    const c = drawCrop(rng, photos, spec, split, o.size);
    await writePng(
      join(dir, cat, rel),
      await cropAt(photos.find((p) => p.file === c.photo)!, c, o.size),
      o.size,
      3,
    );
    images.push({ file: rel, ...c });
    progress(++done);
  };
  for (let i = 0; i < o.trainGood; i++) await good('train', `train/good/${name3(i)}.png`);
  for (let i = 0; i < o.testGood; i++) await good('test', `test/good/${name3(i)}.png`);
  const defects: Record<string, number> = {};
  for (const kind of o.defects) {
    for (let i = 0; i < o.perDefect; i++) {
      const c = drawCrop(rng, photos, spec, 'test', o.size);
      const clean = await cropAt(photos.find((p) => p.file === c.photo)!, c, o.size);
      let donor: (CropRecord & { category: string }) | undefined;
      let foreign: Uint8Array | null = null;
      if (kind === 'foreign') {
        // Another category's texture (the same category's other split if the catalog has one category).
        const dc = donors.length > 0 ? donors[rng.int(donors.length)] : cat;
        const dPhotos = photosByCat.get(dc)!;
        const dc0 = drawCrop(rng, dPhotos, o.catalog[dc], donors.length > 0 ? 'test' : 'train', o.size);
        donor = { category: dc, ...dc0 };
        foreign = await cropAt(dPhotos.find((p) => p.file === dc0.photo)!, dc0, o.size);
      }
      const r = makeRealisticDefect(kind, clean, o.size, rng, foreign);
      const rel = `test/${kind}/${name3(i)}.png`;
      const mrel = `ground_truth/${kind}/${name3(i)}_mask.png`;
      await writePng(join(dir, cat, rel), r.image, o.size, 3);
      await writePng(join(dir, cat, mrel), r.mask, o.size, 1);
      images.push({ file: rel, mask: mrel, ...c, defect: donor ? { ...r.params, donor } : r.params });
      progress(++done);
    }
    defects[kind] = o.perDefect;
  }
  return {
    description: spec.description,
    photos: spec.photos.map((p) => p.file),
    scale: spec.scale,
    rotate: spec.rotate,
    trainGood: o.trainGood,
    testGood: o.testGood,
    defects,
    images,
  };
}

function sourcesMarkdown(
  o: Resolved,
  infos: Map<string, PhotoInfo>,
  summary: Record<string, { trainGood: number; testGood: number; defects: Record<string, number> }>,
): string {
  const lines = [
    '# Sources of this benchmark',
    '',
    `Built by \`${REAL_GENERATOR}\` (\`npm run dataset -- real\`), seed ${o.seed}, ${o.size} px.`,
    'Images are crops of the photographs below with synthetic defects painted in; masks mark exactly',
    `the pixels a defect changed (blend alpha >= ${MASK_ALPHA}, each changed by >= ${MIN_DELTA} grey levels;`,
    'every other pixel is byte-identical to the photo crop). Train crops come from the upper half of each',
    "photo, test crops from the lower half. The licences are the source files' licences; redistribute",
    'this folder under them (GPL-2 / CC-BY-SA-3.0 files require the same licence and attribution).',
    '',
    '| category | train good | test good | defective | photo | package | licence | copyright holders (stanza) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const cat of o.categories) {
    const s = summary[cat];
    const nDef = Object.values(s.defects).reduce((a, b) => a + b, 0);
    o.catalog[cat].photos.forEach((p, i) => {
      const info = infos.get(p.file)!;
      const counts = i === 0 ? [String(s.trainGood), String(s.testGood), String(nDef)] : ['', '', ''];
      lines.push(
        `| ${i === 0 ? cat : ''} | ${counts.join(' | ')} | \`${info.path}\` | ${info.package} ${info.version} | ${info.licence} | ${info.copyright.replace(/\|/g, '/').slice(0, 300)} |`,
      );
    });
  }
  return `${lines.join('\n')}\n`;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Builds the benchmark into a temp folder next to `out` and renames it into place. Returns false
 * (and leaves `out` alone) if `out` already exists.
 */
export async function buildRealBenchmark(out: string, opts: RealBenchOptions = {}): Promise<boolean> {
  const o = withDefaults(opts);
  if (await exists(out)) return false;
  const source = opts.source ?? (await ufoaiSource());
  // Donor textures for `foreign` defects come from every catalog category, so one category's images
  // do not depend on which others were asked for.
  const files = [...new Set(Object.values(o.catalog).flatMap((s) => s.photos.map((p) => p.file)))];
  const bufs = await source.read(files);
  const photosByCat = new Map<string, Photo[]>();
  for (const [cat, spec] of Object.entries(o.catalog)) {
    const list: Photo[] = [];
    for (const p of spec.photos) list.push(await decodePhoto(p.file, bufs.get(p.file)!, p.region));
    photosByCat.set(cat, list);
  }
  const infos = new Map(files.map((f) => [f, source.describe(f)]));
  const staging = join(
    dirname(out),
    `.${basename(out)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  const perCat = o.trainGood + o.testGood + o.perDefect * o.defects.length;
  try {
    const categories: Record<string, Awaited<ReturnType<typeof writeCategory>>> = {};
    for (const [k, cat] of o.categories.entries()) {
      categories[cat] = await writeCategory(staging, cat, photosByCat, o, (done) => {
        if (done === perCat || done % 20 === 0)
          o.onProgress?.(`[${k + 1}/${o.categories.length}] ${cat}: ${done}/${perCat} images`);
      });
    }
    const manifest = {
      generator: REAL_GENERATOR,
      size: o.size,
      seed: o.seed,
      testFraction: TEST_FRACTION,
      mask: { alphaThreshold: MASK_ALPHA, minDeltaGreyLevels: MIN_DELTA, areaRange: [MIN_AREA, MAX_AREA] },
      defectKinds: o.defects,
      sources: files
        .filter((f) => o.categories.some((c) => o.catalog[c].photos.some((p) => p.file === f)))
        .map((f) => ({ file: f, ...infos.get(f)! })),
      categories,
    };
    await writeFile(join(staging, 'dataset.json'), `${JSON.stringify(manifest, null, 1)}\n`);
    await writeFile(join(staging, 'SOURCES.md'), sourcesMarkdown(o, infos, categories));
    await rename(staging, out);
    return true;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(out))) return false;
    throw err;
  }
}

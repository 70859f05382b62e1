/**
 * Reader of the MVTec AD folder layout:
 *   <root>/<category>/train/good/*.png
 *   <root>/<category>/test/<defect>/*.png            (defect `good` = normal, label 0)
 *   <root>/<category>/ground_truth/<defect>/<name>_mask.png
 *   <root>/<category>/holdout/<defect>/*.png          optional: held back for `promote` only, with
 *   <root>/<category>/holdout_ground_truth/<defect>/<name>_mask.png
 * Works for the 15 MVTec AD categories and any folder laid out the same way.
 */
import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { CATEGORY_NAME_RE } from '../config/load';
import { sha256 } from '../util/atomic';
import { UserError } from '../util/errors';

export const MVTEC_CATEGORIES = [
  'bottle',
  'cable',
  'capsule',
  'carpet',
  'grid',
  'hazelnut',
  'leather',
  'metal_nut',
  'pill',
  'screw',
  'tile',
  'toothbrush',
  'transistor',
  'wood',
  'zipper',
] as const;

/** MVTec AD categories whose images are single-channel (loaded as 3 identical channels). */
export const MVTEC_GRAYSCALE = ['grid', 'screw', 'zipper'] as const;

const IMAGE_EXTS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff']);

export interface ImageRecord {
  /** Unique within the category: path below the category folder without extension (`test/scratch/003`). */
  id: string;
  /** Path relative to the dataset root. */
  source: string;
  split: 'train' | 'val' | 'test' | 'holdout';
  /** `good` for normal images. */
  defectType: string;
  label: 0 | 1;
  /** Path of the mask relative to the dataset root; null for good images. */
  maskSource: string | null;
}

export interface CategoryIndex {
  root: string;
  category: string;
  train: ImageRecord[];
  val: ImageRecord[];
  test: ImageRecord[];
  /** `<category>/holdout/<type>/` (masks in `holdout_ground_truth/`): for `promote` only; often empty. */
  holdout: ImageRecord[];
  /** Test defect types (sorted), without `good`. */
  defectTypes: string[];
  /** Non-fatal findings (and, with `missingMask: 'report'`, missing masks). */
  problems: string[];
}

export interface IndexOptions {
  valFraction: number;
  seed: number;
  /** `throw` (default): a defect image without mask is a UserError('MISSING_MASK'); `report`: listed in problems. */
  missingMask?: 'throw' | 'report';
}

export function assertCategoryName(name: string): void {
  if (!CATEGORY_NAME_RE.test(name)) {
    throw new UserError(
      'UNKNOWN_CATEGORY',
      `invalid category name ${JSON.stringify(name)}: letters, digits, _ and - only (no paths)`,
    );
  }
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

async function listDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(byName);
}

async function listImages(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith('.') && IMAGE_EXTS.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort(byName);
}

/** Category folders under `root` that have `train/good` (sorted). */
export async function listCategories(root: string): Promise<string[]> {
  const dirs = await listDirs(root);
  const out: string[] = [];
  for (const d of dirs)
    if (CATEGORY_NAME_RE.test(d) && (await isDir(join(root, d, 'train', 'good')))) out.push(d);
  return out;
}

/**
 * Deterministic train/validation split of the train/good file names: files are ranked by
 * sha256(`<seed>:<file name>`) and the first round(n * valFraction) go to validation (at least one,
 * and at least one stays for training, when n >= 2). A file's rank depends only on its own name, so
 * adding or removing files moves at most one other file across the boundary.
 */
export function splitTrainVal(
  names: readonly string[],
  valFraction: number,
  seed: number,
): { train: string[]; val: string[] } {
  const n = names.length;
  const nVal = n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(n * valFraction)));
  const ranked = [...names].sort((a, b) => {
    const ha = sha256(`${seed}:${a}`);
    const hb = sha256(`${seed}:${b}`);
    return ha < hb ? -1 : ha > hb ? 1 : byName(a, b);
  });
  const val = new Set(ranked.slice(0, nVal));
  const sorted = [...names].sort(byName);
  return { train: sorted.filter((x) => !val.has(x)), val: sorted.filter((x) => val.has(x)) };
}

const stem = (file: string) => file.slice(0, file.length - extname(file).length);

/** Lists one category's images and masks (no decoding). */
export async function indexCategory(
  root: string,
  category: string,
  opts: IndexOptions,
): Promise<CategoryIndex> {
  assertCategoryName(category);
  const catDir = join(root, category);
  if (!(await isDir(join(catDir, 'train', 'good')))) {
    const available = await listCategories(root);
    throw new UserError(
      'UNKNOWN_CATEGORY',
      `unknown category "${category}": ${join(catDir, 'train', 'good')} not found (available in ${root}: ${available.join(', ') || 'none'})`,
      { details: { category, available } },
    );
  }
  const problems: string[] = [];
  const goodFiles = await listImages(join(catDir, 'train', 'good'));
  if (goodFiles.length === 0) problems.push(`${category}/train/good has no images`);
  const { train, val } = splitTrainVal(goodFiles, opts.valFraction, opts.seed);
  const goodRecord = (file: string, split: 'train' | 'val'): ImageRecord => ({
    id: `train/good/${stem(file)}`,
    source: join(category, 'train', 'good', file),
    split,
    defectType: 'good',
    label: 0,
    maskSource: null,
  });

  const test: ImageRecord[] = [];
  const defectTypes: string[] = [];
  const testDir = join(catDir, 'test');
  if (!(await isDir(testDir))) problems.push(`${category}/test not found: no test images to evaluate on`);
  for (const defect of await listDirs(testDir)) {
    if (defect !== 'good') defectTypes.push(defect);
    for (const file of await listImages(join(testDir, defect))) {
      test.push(await testRecord(root, category, defect, file, opts, problems));
    }
  }
  const holdout: ImageRecord[] = [];
  for (const defect of await listDirs(join(catDir, 'holdout')))
    for (const file of await listImages(join(catDir, 'holdout', defect)))
      holdout.push(await testRecord(root, category, defect, file, opts, problems, 'holdout'));
  return {
    root,
    category,
    train: train.map((f) => goodRecord(f, 'train')),
    val: val.map((f) => goodRecord(f, 'val')),
    test,
    holdout,
    defectTypes,
    problems,
  };
}

async function testRecord(
  root: string,
  category: string,
  defect: string,
  file: string,
  opts: IndexOptions,
  problems: string[],
  split: 'test' | 'holdout' = 'test',
): Promise<ImageRecord> {
  const source = join(category, split, defect, file);
  const rec: ImageRecord = {
    id: `${split}/${defect}/${stem(file)}`,
    source,
    split,
    defectType: defect,
    label: 0,
    maskSource: null,
  };
  if (defect === 'good') return rec;
  rec.label = 1;
  // Held-back images keep their masks apart, so that names may repeat those of test/.
  const masks = split === 'test' ? 'ground_truth' : 'holdout_ground_truth';
  const maskSource = join(category, masks, defect, `${stem(file)}_mask.png`);
  const exists = await stat(join(root, maskSource)).then(
    (s) => s.isFile(),
    () => false,
  );
  if (exists) {
    rec.maskSource = maskSource;
  } else {
    const msg = `defect image ${source} has no mask: expected ${maskSource}`;
    if ((opts.missingMask ?? 'throw') === 'throw') {
      throw new UserError('MISSING_MASK', `${msg} (in ${root})`, {
        details: { image: source, mask: maskSource },
      });
    }
    problems.push(msg);
  }
  return rec;
}

/** Decodes any supported image to `size` x `size` RGB (grayscale becomes 3 equal channels, alpha dropped). */
export async function decodeImage(absPath: string, size: number): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(absPath, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size, size, { fit: 'fill' })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return toRgb(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), info.channels, size * size);
  } catch (err) {
    throw new UserError('CORRUPT_IMAGE', `cannot decode image ${absPath}: ${(err as Error).message}`, {
      cause: err,
      details: { file: absPath },
    });
  }
}

function toRgb(data: Uint8Array, channels: number, pixels: number): Uint8Array {
  if (channels === 3) return data;
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const g = data[i * channels];
    out[i * 3] = g;
    out[i * 3 + 1] = channels >= 3 ? data[i * channels + 1] : g;
    out[i * 3 + 2] = channels >= 3 ? data[i * channels + 2] : g;
  }
  return out;
}

/** Decodes a mask to `size` x `size` values 0|1 (any non-dark pixel of the original counts as defect). */
export async function decodeMask(absPath: string, size: number): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(absPath, { failOn: 'error' })
      .removeAlpha()
      .greyscale()
      .resize(size, size, { fit: 'fill' })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const out = new Uint8Array(size * size);
    for (let i = 0; i < out.length; i++) out[i] = data[i * info.channels] >= 128 ? 1 : 0;
    return out;
  } catch (err) {
    throw new UserError('CORRUPT_IMAGE', `cannot decode mask ${absPath}: ${(err as Error).message}`, {
      cause: err,
      details: { file: absPath },
    });
  }
}

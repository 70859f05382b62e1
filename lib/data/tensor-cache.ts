/**
 * The preprocess step's output: one folder with compact uint8 tensors per split and a manifest.
 *   manifest.json                      shapes, counts, records, sha256 of every file, skipped files
 *   train.u8 / val.u8 / test.u8        count*size*size*3, NHWC RGB
 *   test-masks.u8                      count*size*size, 0|1
 *   holdout.u8, holdout-masks.u8       the same, when the dataset holds images back for `promote`
 * Consumers find the folder as dirname(inputPath(ctx, 'preprocess', 'manifest')).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256, writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import type { ImageRecord } from './mvtec';

export type { ImageRecord } from './mvtec';

/** The splits every cache has. */
export type RequiredSplit = 'train' | 'val' | 'test';
export const SPLITS: readonly RequiredSplit[] = ['train', 'val', 'test'];
/**
 * `holdout`: labelled images held back from every step but `promote`, which compares a retrained
 * model with the champion on them (`<category>/holdout/`, lib/data/mvtec). Written only when the
 * dataset has some.
 */
export type SplitName = RequiredSplit | 'holdout';
type SplitEntry = { count: number; images: CacheFile; masks: CacheFile | null; records: ImageRecord[] };
export const MANIFEST_FILE = 'manifest.json';
export const TENSOR_CACHE_VERSION = 1;

export interface CachedSplit {
  split: SplitName;
  count: number;
  size: number;
  channels: 3;
  /** count*size*size*3, NHWC RGB. */
  images: Uint8Array;
  /** count*size*size, 0|1; the labelled splits (test, holdout) only. */
  masks: Uint8Array | null;
  records: ImageRecord[];
}

export interface CacheFile {
  file: string;
  bytes: number;
  sha256: string;
}

export interface SkippedFile {
  /** Relative to the dataset root. */
  source: string;
  reason: string;
}

export interface TensorCacheManifest {
  version: number;
  category: string;
  dataRoot: string;
  size: number;
  channels: 3;
  defectTypes: string[];
  splits: Record<RequiredSplit, SplitEntry> & { holdout?: SplitEntry };
  skipped: SkippedFile[];
}

export interface SplitData {
  images: Uint8Array;
  masks: Uint8Array | null;
  records: ImageRecord[];
}

async function writeBlob(dir: string, file: string, data: Uint8Array): Promise<CacheFile> {
  await writeFileAtomic(join(dir, file), data);
  return { file, bytes: data.byteLength, sha256: sha256(data) };
}

/** Writes the blobs, then the manifest (the commit point: readers start from the manifest). */
export async function writeTensorCache(
  dir: string,
  meta: { category: string; dataRoot: string; size: number; defectTypes: string[]; skipped: SkippedFile[] },
  splits: Record<RequiredSplit, SplitData> & { holdout?: SplitData },
): Promise<TensorCacheManifest> {
  const out = {} as TensorCacheManifest['splits'];
  const present: SplitName[] = [...SPLITS];
  if (splits.holdout && splits.holdout.records.length > 0) present.push('holdout');
  for (const split of present) {
    const s = splits[split] as SplitData;
    out[split] = {
      count: s.records.length,
      images: await writeBlob(dir, `${split}.u8`, s.images),
      masks: s.masks ? await writeBlob(dir, `${split}-masks.u8`, s.masks) : null,
      records: s.records,
    };
  }
  const manifest: TensorCacheManifest = {
    version: TENSOR_CACHE_VERSION,
    ...meta,
    channels: 3,
    splits: out,
    skipped: meta.skipped,
  };
  await writeJsonAtomic(join(dir, MANIFEST_FILE), manifest);
  return manifest;
}

export async function readTensorCacheManifest(preprocessDir: string): Promise<TensorCacheManifest> {
  const path = join(preprocessDir, MANIFEST_FILE);
  let manifest: TensorCacheManifest;
  try {
    manifest = JSON.parse(await readFile(path, 'utf8')) as TensorCacheManifest;
  } catch (err) {
    throw new UserError(
      'INVALID_DATASET',
      `tensor cache manifest ${path} is missing or unreadable; rerun the preprocess step`,
      { cause: err },
    );
  }
  if (manifest.version !== TENSOR_CACHE_VERSION) {
    throw new UserError(
      'INVALID_DATASET',
      `tensor cache ${path}: version ${manifest.version}, expected ${TENSOR_CACHE_VERSION}; rerun the preprocess step`,
    );
  }
  return manifest;
}

async function readBlob(dir: string, entry: CacheFile, expectedBytes: number): Promise<Uint8Array> {
  const path = join(dir, entry.file);
  const buf = await readFile(path).catch((err: unknown) => {
    throw new UserError(
      'INVALID_DATASET',
      `tensor cache file ${path} is missing; rerun the preprocess step`,
      { cause: err },
    );
  });
  const got = sha256(buf);
  if (got !== entry.sha256 || buf.byteLength !== expectedBytes) {
    throw new UserError(
      'INVALID_DATASET',
      `tensor cache file ${path} is corrupt: sha256 ${got} (${buf.byteLength} bytes), manifest says ${entry.sha256} (${expectedBytes} bytes); rerun the preprocess step`,
    );
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Reads one split, verifying sizes and content hashes against the manifest. */
export async function readCachedSplit(preprocessDir: string, split: SplitName): Promise<CachedSplit> {
  const manifest = await readTensorCacheManifest(preprocessDir);
  const s = manifest.splits[split];
  if (!s) throw new UserError('INVALID_DATASET', `tensor cache ${preprocessDir} has no split "${split}"`);
  const px = manifest.size * manifest.size;
  return {
    split,
    count: s.count,
    size: manifest.size,
    channels: 3,
    images: await readBlob(preprocessDir, s.images, s.count * px * 3),
    masks: s.masks ? await readBlob(preprocessDir, s.masks, s.count * px) : null,
    records: s.records,
  };
}

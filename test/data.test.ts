import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultTrainingConfig } from '../lib/config/schema';
import { checkDataset } from '../lib/data/check';
import { ensureDemoDataset } from '../lib/data/demo';
import { decodeImage, decodeMask, indexCategory, listCategories, splitTrainVal } from '../lib/data/mvtec';
import { preprocessStep } from '../lib/data/preprocess-step';
import { synthesizeDataset } from '../lib/data/synth';
import { readCachedSplit, readTensorCacheManifest } from '../lib/data/tensor-cache';
import { localHooks, type StepContext } from '../lib/steps/contracts';
import type { UserError } from '../lib/util/errors';

let tmp: string;
let data: string;
const SIZE = 32;
const opts = { valFraction: 0.25, seed: 1 };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'data-test-'));
  data = join(tmp, 'synth');
  await synthesizeDataset(data, { size: SIZE, seed: 3, trainGood: 8, testGood: 2, perDefect: 1 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function stepContext(
  dataRoot: string,
  category: string,
  name: string,
  on_corrupt: 'skip' | 'fail' = 'skip',
): StepContext {
  const runDir = join(tmp, 'runs', name);
  const config = { ...defaultTrainingConfig(), image_size: 24, val_fraction: 0.25, data: { on_corrupt } };
  return {
    runDir,
    pipeline: 'test',
    runId: name,
    category,
    dataRoot,
    step: 'preprocess',
    stepDir: join(runDir, category, 'preprocess'),
    config,
    params: {},
    inputs: {},
  };
}

async function copyCategory(name: string, category: string): Promise<string> {
  const root = join(tmp, name);
  const copy = async (rel: string) => {
    const src = join(data, rel);
    for (const e of await readdir(src, { withFileTypes: true })) {
      if (e.isDirectory()) await copy(join(rel, e.name));
      else {
        await mkdir(join(root, rel), { recursive: true });
        await copyFile(join(src, e.name), join(root, rel, e.name));
      }
    }
  };
  await copy(category);
  return root;
}

describe('synthetic dataset', () => {
  it('writes textures and objects with defects and exact masks', async () => {
    expect(await listCategories(data)).toEqual(['chip', 'marble', 'mesh', 'washer', 'weave']);
    const idx = await indexCategory(data, 'washer', opts);
    expect(idx.defectTypes).toEqual(['hole', 'missing', 'scratch', 'stain']);
    expect(idx.train.length + idx.val.length).toBe(8);
    expect(idx.val).toHaveLength(2);
    expect(idx.test.filter((r) => r.label === 0)).toHaveLength(2);
    const defects = idx.test.filter((r) => r.label === 1);
    expect(defects).toHaveLength(4);
    for (const r of defects) {
      expect(r.maskSource).toBe(join('washer', 'ground_truth', r.defectType, '000_mask.png'));
      const mask = await decodeMask(join(data, r.maskSource!), SIZE);
      const img = await decodeImage(join(data, r.source), SIZE);
      const good = await decodeImage(join(data, 'washer/test/good/000.png'), SIZE);
      const area = mask.reduce((a, b) => a + b, 0);
      expect(area).toBeGreaterThan(0);
      expect(area).toBeLessThan(SIZE * SIZE * 0.3);
      // Inside the mask the defect image differs clearly from a good one.
      let diff = 0;
      for (let i = 0; i < mask.length; i++)
        if (mask[i]) diff += Math.abs(img[i * 3] - good[i * 3]) + Math.abs(img[i * 3 + 2] - good[i * 3 + 2]);
      expect(diff / area).toBeGreaterThan(20);
    }
    expect(idx.test.find((r) => r.defectType === 'good')!.maskSource).toBeNull();
  });

  it('is deterministic for a seed', async () => {
    const again = join(tmp, 'again');
    await synthesizeDataset(again, {
      size: SIZE,
      seed: 3,
      trainGood: 8,
      testGood: 2,
      perDefect: 1,
      categories: ['chip'],
    });
    for (const f of [
      'chip/train/good/003.png',
      'chip/test/missing/000.png',
      'chip/ground_truth/stain/000_mask.png',
    ]) {
      expect(Buffer.compare(await readFile(join(again, f)), await readFile(join(data, f)))).toBe(0);
    }
    expect(await synthesizeDataset(again, { size: SIZE })).toBe(false); // never overwrites
  });

  it('loads grayscale images as three equal channels', async () => {
    const img = await decodeImage(join(data, 'mesh/train/good/000.png'), 16);
    expect(img).toHaveLength(16 * 16 * 3);
    for (let i = 0; i < 16 * 16; i++) {
      expect(img[i * 3 + 1]).toBe(img[i * 3]);
      expect(img[i * 3 + 2]).toBe(img[i * 3]);
    }
  });

  it('ensureDemoDataset generates once, atomically', async () => {
    const dir = join(tmp, 'demo-once');
    const tiny = { size: 16, trainGood: 2, testGood: 1, perDefect: 1 };
    expect(await ensureDemoDataset(dir, tiny)).toBe(dir);
    expect(await listCategories(dir)).toHaveLength(5);
    expect((await readdir(tmp)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const stamp = (await readFile(join(dir, 'dataset.json'), 'utf8')).length;
    await ensureDemoDataset(dir, { ...tiny, seed: 9 });
    expect((await readFile(join(dir, 'dataset.json'), 'utf8')).length).toBe(stamp);
  });
});

describe('MVTec reader', () => {
  it('splits train/good deterministically by seed and fraction', () => {
    const names = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(3, '0')}.png`);
    const a = splitTrainVal(names, 0.2, 42);
    expect(a.val).toHaveLength(4);
    expect(a.train).toHaveLength(16);
    expect(splitTrainVal([...names].reverse(), 0.2, 42)).toEqual(a);
    expect(splitTrainVal(names, 0.2, 7).val).not.toEqual(a.val);
    // Adding a file moves at most one existing file across the boundary.
    const b = splitTrainVal([...names, '999.png'], 0.2, 42);
    expect(a.val.filter((v) => !b.val.includes(v)).length).toBeLessThanOrEqual(1);
    expect(splitTrainVal(['a.png'], 0.5, 1)).toEqual({ train: ['a.png'], val: [] });
  });

  it('rejects path traversal and unknown categories', async () => {
    for (const bad of ['../synth', 'a/b', '.hidden', '']) {
      const err = await indexCategory(data, bad, opts).catch((e: unknown) => e);
      expect((err as UserError).code).toBe('UNKNOWN_CATEGORY');
    }
    const err = (await indexCategory(data, 'bottle', opts).catch((e: unknown) => e)) as UserError;
    expect(err.message).toContain('unknown category "bottle"');
    expect(err.message).toContain('chip, marble, mesh, washer, weave');
  });

  it('names the image and the expected mask when a mask is missing', async () => {
    const root = await copyCategory('nomask', 'weave');
    await rm(join(root, 'weave/ground_truth/hole/000_mask.png'));
    const err = (await indexCategory(root, 'weave', opts).catch((e: unknown) => e)) as UserError;
    expect(err.code).toBe('MISSING_MASK');
    expect(err.message).toContain('weave/test/hole/000.png');
    expect(err.message).toContain('expected weave/ground_truth/hole/000_mask.png');
    const rows = await checkDataset(root, { ...opts, decode: true });
    expect(rows[0].problems).toEqual([
      'defect image weave/test/hole/000.png has no mask: expected weave/ground_truth/hole/000_mask.png',
    ]);
  });
});

describe('held-back images (holdout/)', () => {
  it('are indexed with masks from holdout_ground_truth/, cached as their own split, and named when a mask is missing', async () => {
    const root = await copyCategory('holdout', 'weave');
    // The test split's images and masks, copied under holdout/ (names repeat test/'s on purpose).
    for (const [from, to] of [
      ['weave/test', 'weave/holdout'],
      ['weave/ground_truth', 'weave/holdout_ground_truth'],
    ]) {
      for (const d of await readdir(join(root, from))) {
        await mkdir(join(root, to, d), { recursive: true });
        for (const f of await readdir(join(root, from, d)))
          await copyFile(join(root, from, d, f), join(root, to, d, f));
      }
    }
    const idx = await indexCategory(root, 'weave', opts);
    expect(idx.holdout.length).toBe(idx.test.length);
    const defect = idx.holdout.find((r) => r.label === 1);
    expect(defect?.source).toMatch(/^weave\/holdout\//);
    expect(defect?.maskSource).toMatch(/^weave\/holdout_ground_truth\//);
    expect(idx.holdout.every((r) => r.split === 'holdout')).toBe(true);

    const ctx = stepContext(root, 'weave', 'holdout');
    const res = await preprocessStep(ctx, localHooks());
    expect(res.outputs.map((o) => o.name)).toEqual(expect.arrayContaining(['holdout', 'holdout_masks']));
    expect(res.summary.holdout).toBe(idx.holdout.length);
    const held = await readCachedSplit(ctx.stepDir, 'holdout');
    const test = await readCachedSplit(ctx.stepDir, 'test');
    expect(Buffer.compare(Buffer.from(held.images), Buffer.from(test.images))).toBe(0);
    expect(Buffer.compare(Buffer.from(held.masks!), Buffer.from(test.masks!))).toBe(0);

    await rm(join(root, 'weave/holdout_ground_truth/hole/000_mask.png'));
    const err = (await indexCategory(root, 'weave', opts).catch((e: unknown) => e)) as UserError;
    expect(err.code).toBe('MISSING_MASK');
    expect(err.message).toContain('expected weave/holdout_ground_truth/hole/000_mask.png');
  });

  it('a dataset without them has no holdout split', async () => {
    const ctx = stepContext(data, 'chip', 'no-holdout');
    await preprocessStep(ctx, localHooks());
    expect((await readTensorCacheManifest(ctx.stepDir)).splits.holdout).toBeUndefined();
    await expect(readCachedSplit(ctx.stepDir, 'holdout')).rejects.toThrow(/has no split "holdout"/);
  });
});

describe('preprocess step and tensor cache', () => {
  it('round-trips through readCachedSplit', async () => {
    const ctx = stepContext(data, 'chip', 'roundtrip');
    const progress: number[] = [];
    const res = await preprocessStep(
      ctx,
      localHooks((p) => progress.push(p.batch ?? 0)),
    );
    expect(res.outputs.map((o) => o.name)).toEqual(['manifest', 'train', 'val', 'test', 'test_masks']);
    expect(res.summary).toMatchObject({
      train: 6,
      val: 2,
      test: 5,
      skipped: 0,
      testByDefect: { good: 2, missing: 1, scratch: 1, stain: 1 },
    });
    expect(progress.at(-1)).toBe(13);
    const dir = ctx.stepDir;
    const train = await readCachedSplit(dir, 'train');
    expect([train.count, train.size, train.channels, train.images.length, train.masks]).toEqual([
      6,
      24,
      3,
      6 * 24 * 24 * 3,
      null,
    ]);
    const first = await decodeImage(join(data, train.records[0].source), 24);
    expect(Buffer.compare(Buffer.from(train.images.subarray(0, first.length)), Buffer.from(first))).toBe(0);
    const test = await readCachedSplit(dir, 'test');
    expect(test.masks).toHaveLength(5 * 24 * 24);
    test.records.forEach((r, i) => {
      const area = test.masks!.subarray(i * 576, (i + 1) * 576).reduce((a, b) => a + b, 0);
      if (r.label === 0) expect(area).toBe(0);
      else expect(area).toBeGreaterThan(0);
    });
    expect((await readCachedSplit(dir, 'val')).records.every((r) => r.split === 'val')).toBe(true);

    const blob = join(dir, 'val.u8');
    const bytes = await readFile(blob);
    bytes[0] ^= 0xff;
    await writeFile(blob, bytes);
    await expect(readCachedSplit(dir, 'val')).rejects.toThrow(/val\.u8 is corrupt: sha256/);
  });

  it('skips or fails on a corrupt image per data.on_corrupt', async () => {
    const root = await copyCategory('corrupt', 'weave');
    await writeFile(join(root, 'weave/train/good/002.png'), Buffer.from('\x89PNG\r\n\x1a\nnot really'));
    const skip = stepContext(root, 'weave', 'skip', 'skip');
    const res = await preprocessStep(skip, localHooks());
    expect(res.summary.skipped).toBe(1);
    expect(res.summary.skippedFiles).toEqual(['weave/train/good/002.png']);
    const manifest = await readTensorCacheManifest(skip.stepDir);
    expect(manifest.skipped[0].source).toBe('weave/train/good/002.png');
    expect(manifest.splits.train.count + manifest.splits.val.count).toBe(7);

    const fail = stepContext(root, 'weave', 'fail', 'fail');
    const err = (await preprocessStep(fail, localHooks()).catch((e: unknown) => e)) as UserError;
    expect(err.code).toBe('CORRUPT_IMAGE');
    expect(err.message).toContain(join(root, 'weave/train/good/002.png'));
  });
});

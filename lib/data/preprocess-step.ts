/**
 * `preprocess` step: decodes and resizes one category's images once, into the tensor cache that
 * train/validate/threshold read (see tensor-cache.ts).
 */
import { join } from 'node:path';
import type { JsonValue, StepContext, StepFunction, StepHooks } from '../steps/contracts';
import { artifact, finishStep } from '../steps/result';
import { UserError } from '../util/errors';
import { decodeImage, decodeMask, type ImageRecord, indexCategory } from './mvtec';
import {
  MANIFEST_FILE,
  type SkippedFile,
  SPLITS,
  type SplitData,
  type SplitName,
  writeTensorCache,
} from './tensor-cache';

/** sharp decodes on libuv threads; a few in flight keep them busy without piling up memory. */
const DECODE_PARALLELISM = 4;

interface Decoded {
  record: ImageRecord;
  image: Uint8Array;
  mask: Uint8Array | null;
}

async function decodeRecord(ctx: StepContext, rec: ImageRecord, size: number): Promise<Decoded> {
  const image = await decodeImage(join(ctx.dataRoot, rec.source), size);
  const mask =
    rec.split !== 'test' && rec.split !== 'holdout'
      ? null
      : rec.maskSource
        ? await decodeMask(join(ctx.dataRoot, rec.maskSource), size)
        : new Uint8Array(size * size);
  return { record: rec, image, mask };
}

/** Decodes records in order; corrupt files are skipped (and listed) or fatal, per config.data.on_corrupt. */
async function decodeAll(
  ctx: StepContext,
  hooks: StepHooks,
  records: ImageRecord[],
  skipped: SkippedFile[],
  onDone: () => void,
): Promise<Decoded[]> {
  const size = ctx.config.image_size;
  const results: (Decoded | null)[] = new Array(records.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < records.length) {
      hooks.signal.throwIfAborted();
      const i = next++;
      try {
        results[i] = await decodeRecord(ctx, records[i], size);
      } catch (err) {
        if (
          !(err instanceof UserError) ||
          err.code !== 'CORRUPT_IMAGE' ||
          ctx.config.data.on_corrupt === 'fail'
        )
          throw err;
        skipped.push({ source: records[i].source, reason: err.message });
      }
      onDone();
    }
  };
  await Promise.all(Array.from({ length: DECODE_PARALLELISM }, worker));
  return results.filter((r): r is Decoded => r !== null);
}

function packSplit(split: SplitName, decoded: Decoded[], size: number): SplitData {
  const px = size * size;
  const images = new Uint8Array(decoded.length * px * 3);
  const masks = split === 'test' || split === 'holdout' ? new Uint8Array(decoded.length * px) : null;
  decoded.forEach((d, i) => {
    images.set(d.image, i * px * 3);
    if (masks && d.mask) masks.set(d.mask, i * px);
  });
  return { images, masks, records: decoded.map((d) => d.record) };
}

function countBy(records: ImageRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) out[r.defectType] = (out[r.defectType] ?? 0) + 1;
  return out;
}

export const preprocessStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  const { config } = ctx;
  const index = await indexCategory(ctx.dataRoot, ctx.category, {
    valFraction: config.val_fraction,
    seed: config.seed,
  });
  const all = [...index.train, ...index.val, ...index.test, ...index.holdout];
  const skipped: SkippedFile[] = [];
  let done = 0;
  const tick = () => {
    done++;
    if (done % 8 === 0 || done === all.length) {
      hooks.progress({
        stage: 'preprocess',
        batch: done,
        totalBatches: all.length,
        message: `decoded ${done}/${all.length} images`,
      });
    }
  };
  hooks.progress({
    stage: 'preprocess',
    batch: 0,
    totalBatches: all.length,
    message: `indexing ${ctx.category}`,
  });

  const splits = {} as Record<SplitName, SplitData>;
  for (const split of [...SPLITS, ...(index.holdout.length > 0 ? (['holdout'] as const) : [])]) {
    splits[split] = packSplit(
      split,
      await decodeAll(ctx, hooks, index[split], skipped, tick),
      config.image_size,
    );
  }
  if (splits.train.records.length === 0) {
    throw new UserError(
      'INVALID_DATASET',
      `category ${ctx.category} in ${ctx.dataRoot}: no usable training images (train/good)`,
    );
  }

  const manifest = await writeTensorCache(
    ctx.stepDir,
    {
      category: ctx.category,
      dataRoot: ctx.dataRoot,
      size: config.image_size,
      defectTypes: index.defectTypes,
      skipped,
    },
    splits,
  );
  const outputs = [await artifact(ctx, 'manifest', join(ctx.stepDir, MANIFEST_FILE))];
  for (const split of SPLITS)
    outputs.push(await artifact(ctx, split, join(ctx.stepDir, manifest.splits[split].images.file)));
  const maskFile = manifest.splits.test.masks?.file;
  if (maskFile) outputs.push(await artifact(ctx, 'test_masks', join(ctx.stepDir, maskFile)));
  const holdout = manifest.splits.holdout;
  if (holdout) {
    outputs.push(await artifact(ctx, 'holdout', join(ctx.stepDir, holdout.images.file)));
    if (holdout.masks)
      outputs.push(await artifact(ctx, 'holdout_masks', join(ctx.stepDir, holdout.masks.file)));
  }

  const summary: Record<string, JsonValue> = {
    imageSize: config.image_size,
    train: splits.train.records.length,
    val: splits.val.records.length,
    test: splits.test.records.length,
    testByDefect: countBy(splits.test.records),
    holdout: splits.holdout?.records.length ?? 0,
    skipped: skipped.length,
    skippedFiles: skipped.slice(0, 20).map((s) => s.source),
    problems: index.problems,
  };
  return finishStep(ctx, 'preprocess', startedAt, outputs, summary);
};

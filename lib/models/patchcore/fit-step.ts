/**
 * The `train` step for `model.kind: patchcore`: fits the memory bank on the good training images and
 * writes the fitted detector as `<stepDir>/best/` (patchcore.onnx + patchcore.json), with the same
 * artifacts (best_model, history, metadata) as the autoencoder's train step, so validate, checkpoint
 * and package handle both kinds alike. A retried attempt refits from scratch: the fit takes seconds to
 * minutes and is deterministic for a seed.
 */
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { patchcoreConfig } from '../../config/schema';
import { readCachedSplit } from '../../data/tensor-cache';
import type { JsonValue, StepFunction } from '../../steps/contracts';
import { artifact, finishStep, inputPath } from '../../steps/result';
import { writeJsonAtomic } from '../../util/atomic';
import { resolveBackbone } from './backbone';
import { fitPatchcore } from './fit';
import { PATCHCORE_JSON, PATCHCORE_ONNX, savePatchcore } from './model';

const round = (v: number, d = 10) => Math.round(v * d) / d;

export const fitPatchcoreStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  const t0 = performance.now();
  const cfg = patchcoreConfig(ctx.config);
  const train = await readCachedSplit(dirname(inputPath(ctx, 'preprocess', 'manifest')), 'train');
  hooks.progress({ stage: 'loading backbone', message: cfg.backbone });
  const backbone = await resolveBackbone(cfg);
  const threads = ctx.config.threads ?? availableParallelism();
  const fit = await fitPatchcore({
    train,
    cfg,
    backbone: backbone.append,
    seed: ctx.config.seed,
    threads,
    signal: hooks.signal,
    onProgress: (p) =>
      hooks.progress({
        stage: `patchcore ${p.stage}`,
        batch: p.done,
        totalBatches: p.total,
        message: `${p.stage}: ${p.done}/${p.total}`,
      }),
  });
  const bestDir = join(ctx.stepDir, 'best');
  const trainSeconds = (performance.now() - t0) / 1000;
  const summary: Record<string, JsonValue> = {
    modelKind: 'patchcore',
    model: `PatchCore on ${backbone.name}`,
    backbone: backbone.name,
    backend: 'onnxruntime',
    // Feature extraction runs on ONNX Runtime's CPU provider; the coreset selection in JS.
    engine: 'onnx',
    executionProvider: 'cpu',
    threads,
    images: train.count,
    trainPatches: fit.trainPatches,
    bankSize: fit.bankSize,
    featureDim: fit.featureDim,
    featureSeconds: round(fit.featureSeconds),
    coresetSeconds: round(fit.coresetSeconds),
    trainSeconds: round(trainSeconds),
    epochsRun: 0,
    resumedFrom: null,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  await savePatchcore(bestDir, fit.onnx, {
    kind: 'patchcore',
    imageSize: train.size,
    backbone: { name: backbone.name, source: backbone.source },
    strides: cfg.strides,
    ...(cfg.patch_stride ? { patchStride: cfg.patch_stride } : {}),
    neighbourhood: cfg.neighbourhood,
    featureDim: fit.featureDim,
    grid: fit.grid,
    bankSize: fit.bankSize,
    trainPatches: fit.trainPatches,
    coresetRatio: cfg.coreset_ratio,
    projectionDim: cfg.projection_dim,
    smoothingSigma: cfg.smoothing_sigma,
    fit: { featureSeconds: summary.featureSeconds, coresetSeconds: summary.coresetSeconds, threads },
  });
  const historyPath = join(ctx.stepDir, 'history.json');
  await writeJsonAtomic(historyPath, []);
  const metadataPath = join(ctx.stepDir, 'metadata.json');
  await writeJsonAtomic(metadataPath, {
    ...summary,
    patchcore: cfg,
    backboneSource: backbone.source,
    onnxBytes: fit.onnx.length,
  });
  const outputs = [
    await artifact(ctx, 'best_model', join(bestDir, PATCHCORE_JSON)),
    await artifact(ctx, 'best_weights', join(bestDir, PATCHCORE_ONNX)),
    await artifact(ctx, 'history', historyPath),
    await artifact(ctx, 'metadata', metadataPath),
  ];
  hooks.progress({ stage: 'train', message: 'done' });
  return finishStep(ctx, 'train', startedAt, outputs, summary);
};

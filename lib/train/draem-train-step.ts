/**
 * The `train` step for `model.kind: draem`: trains both U-Nets (lib/train/draem-trainer), resuming
 * from the newest valid checkpoint of an earlier attempt, and writes the trained detector as
 * `<stepDir>/best/` (draem.onnx + draem.json) with the same artifacts as the other kinds' train steps
 * (best_model, best_weights, history, metadata), so validate, checkpoint and package treat it alike.
 */
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { draemConfig } from '../config/schema';
import { readCachedSplit } from '../data/tensor-cache';
import { buildScoringGraph, scoreWindow } from '../models/draem/graphs';
import { DRAEM_JSON, DRAEM_ONNX, saveDraem } from '../models/draem/model';
import { createLogger } from '../monitor/logger';
import { GPU_INDEX_ENV, resolveExecutionProvider } from '../onnx/execution-provider';
import type { JsonValue, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { writeJsonAtomic } from '../util/atomic';
import { DraemTrainingCancelled, trainDraem } from './draem-trainer';

const round = (v: number, d = 10) => Math.round(v * d) / d;

export const draemTrainStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  const cfg = draemConfig(ctx.config);
  const gpu = process.env[GPU_INDEX_ENV] || undefined;
  const log = createLogger({
    category: ctx.category,
    step: ctx.step,
    attempt: hooks.attempt,
    ...(gpu ? { gpu } : {}),
  });
  const train = await readCachedSplit(dirname(inputPath(ctx, 'preprocess', 'manifest')), 'train');
  const threads = ctx.config.threads ?? availableParallelism();
  const ep = await resolveExecutionProvider(ctx.config.device);
  const rel = (p: string | null | undefined) => (p ? relative(ctx.runDir, p) : undefined);
  let result: Awaited<ReturnType<typeof trainDraem>>;
  try {
    result = await trainDraem({
      train,
      cfg,
      seed: ctx.config.seed,
      threads,
      gradClip: ctx.config.grad_clip,
      checkpointDir: join(ctx.stepDir, 'checkpoints'),
      executionProvider: ep,
      signal: hooks.signal,
      log: (line) => log.info(line),
      onProgress: (p) =>
        hooks.progress({
          stage: 'draem train',
          batch: p.step,
          totalBatches: p.steps,
          loss: p.loss,
          imagesPerSec: p.imagesPerSec,
          etaSec: p.etaSec,
          checkpoint: rel(p.checkpoint),
          message: `step ${p.step}/${p.steps}`,
          ...(gpu !== undefined ? { gpu } : {}),
        }),
    });
  } catch (err) {
    if (err instanceof DraemTrainingCancelled)
      hooks.progress({ stage: 'train', checkpoint: rel(err.checkpoint), message: err.message });
    throw err;
  }
  const window = scoreWindow(train.size, cfg.score_window);
  const onnx = buildScoringGraph(result.networks, result.params, {
    smoothingSigma: cfg.smoothing_sigma,
    scoreWindow: window,
  });
  const bestDir = join(ctx.stepDir, 'best');
  const summary: Record<string, JsonValue> = {
    modelKind: 'draem',
    model: `DRAEM, reconstructive U-Net ${cfg.recon_widths.join(',')} + discriminative U-Net ${cfg.disc_widths.join(',')}`,
    backend: 'onnxruntime',
    engine: 'onnx',
    executionProvider: ep.provider,
    deviceFallback: ep.fallbackReason ?? null,
    threads,
    gpu: gpu ?? null,
    parameters: result.parameters,
    images: train.count,
    stepsRun: result.steps,
    totalSteps: cfg.steps,
    batchSize: Math.min(cfg.batch_size, train.count),
    finalLoss: result.history.at(-1)?.loss ?? null,
    resumedFrom: rel(result.resumedFrom) ?? null,
    imagesPerSec: round(result.imagesPerSec),
    trainSeconds: round(result.trainSeconds),
    epochsRun: 0,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  await saveDraem(bestDir, onnx, {
    kind: 'draem',
    imageSize: train.size,
    reconWidths: cfg.recon_widths,
    discWidths: cfg.disc_widths,
    parameters: result.parameters,
    steps: result.steps,
    smoothingSigma: cfg.smoothing_sigma,
    scoreWindow: window,
    fit: { trainSeconds: summary.trainSeconds, threads, executionProvider: ep.provider },
  });
  const historyPath = join(ctx.stepDir, 'history.json');
  await writeJsonAtomic(historyPath, result.history);
  const metadataPath = join(ctx.stepDir, 'metadata.json');
  await writeJsonAtomic(metadataPath, {
    ...summary,
    draem: cfg,
    // The training objective: these synthetic anomalies in good images, their masks as targets.
    anomalyGenerator: 'realistic (lib/data/anomaly-generator)',
    onnxBytes: onnx.length,
  });
  const outputs = [
    await artifact(ctx, 'best_model', join(bestDir, DRAEM_JSON)),
    await artifact(ctx, 'best_weights', join(bestDir, DRAEM_ONNX)),
    await artifact(ctx, 'history', historyPath),
    await artifact(ctx, 'metadata', metadataPath),
  ];
  hooks.progress({ stage: 'train', checkpoint: rel(result.lastCheckpoint), message: 'done' });
  return finishStep(ctx, 'train', startedAt, outputs, summary);
};

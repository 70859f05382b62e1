/**
 * The pipeline's `train` step: reads the preprocess step's tensor cache, selects the compute backend,
 * trains (resuming from the previous attempt's checkpoint when there is one), and writes
 *   <stepDir>/best/model.json + weights.bin   the best-validation-loss model (artifact 'best_model')
 *   <stepDir>/history.json                    one record per epoch (artifact 'history')
 *   <stepDir>/metadata.json                   backend, training engine + execution provider + threads (+ GPU index
 *                                             and the reason for any CPU fallback), mixed precision, perceptual loss, timings, RSS
 *   <stepDir>/checkpoints/                    resumable checkpoints; <stepDir>/tensorboard/ events
 */
import { dirname, isAbsolute, join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { modelKind } from '../config/schema';
import { readCachedSplit } from '../data/tensor-cache';
import { backendInfoJson, selectBackend } from '../model/backend';
import { loadModel, saveModel } from '../model/io';
import { fitPatchcoreStep } from '../models/patchcore/fit-step';
import { createLogger, type Logger } from '../monitor/logger';
import { trackerOptionsForStep } from '../monitor/step-tracking';
import { createRunTracker, type RunTracker } from '../monitor/tracker';
import { GPU_INDEX_ENV } from '../onnx/execution-provider';
import type { JsonValue, StepFunction } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { writeJsonAtomic } from '../util/atomic';
import { verifyCheckpoint } from './checkpoints';
import { draemTrainStep } from './draem-train-step';
import { plannedEpochs, TrainingCancelled, train } from './trainer';

export const CHECKPOINTS_DIR = 'checkpoints';

/** Peak resident set size of this process so far, in MiB (Linux reports maxRSS in KiB). */
export function peakRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

export const trainStep: StepFunction = async (ctx, hooks) => {
  if (modelKind(ctx.config) === 'patchcore') return fitPatchcoreStep(ctx, hooks);
  if (modelKind(ctx.config) === 'draem') return draemTrainStep(ctx, hooks);
  const startedAt = new Date();
  const cfg = ctx.config;
  const gpu = process.env[GPU_INDEX_ENV] || undefined;
  const log: Logger = createLogger({
    category: ctx.category,
    step: ctx.step,
    attempt: hooks.attempt,
    ...(gpu !== undefined ? { gpu } : {}),
  });
  const preprocessDir = dirname(inputPath(ctx, 'preprocess', 'manifest'));
  const trainSplit = await readCachedSplit(preprocessDir, 'train');
  const valSplit = await readCachedSplit(preprocessDir, 'val').catch(() => null);
  const backend = await selectBackend(cfg.backend, 'train');
  for (const n of backend.notes) log.info(n);
  for (const w of backend.warnings) log.warn(w);
  log.info(`backend ${backend.name}: ${backend.reason}`);

  const checkpointDir = join(ctx.stepDir, CHECKPOINTS_DIR);
  // The previous attempt's heartbeat names its newest checkpoint; use it when it is still valid,
  // otherwise the trainer falls back to the newest valid checkpoint on disk.
  let resumeFrom: string | null = null;
  const hinted = hooks.previousProgress?.checkpoint;
  if (hinted) {
    const abs = isAbsolute(hinted) ? hinted : join(ctx.runDir, hinted);
    const problem = await verifyCheckpoint(abs);
    if (problem === null) resumeFrom = abs;
    else log.warn(`heartbeat checkpoint ${hinted} unusable (${problem}); using the newest valid one`);
  }

  const tracker: RunTracker = await createRunTracker(trackerOptionsForStep(ctx, log));
  const rel = (p: string | undefined) => (p ? relative(ctx.runDir, p) : undefined);
  let result: Awaited<ReturnType<typeof train>>;
  try {
    await tracker.logParams({
      category: ctx.category,
      backend: backend.name,
      image_size: cfg.image_size,
      batch_size: cfg.batch_size,
      epochs: plannedEpochs(cfg, trainSplit.count),
      lr: cfg.optimizer.lr,
      optimizer: cfg.optimizer.name,
      widths: cfg.model.widths.join(','),
      seed: cfg.seed,
    });
    result = await train({
      config: cfg,
      train: trainSplit,
      val: valSplit,
      checkpointDir,
      resumeFrom,
      signal: hooks.signal,
      tracker,
      logger: { info: (m) => log.info(m), warn: (m) => log.warn(m) },
      onProgress: (p) =>
        hooks.progress({
          stage: p.stage,
          epoch: p.epoch,
          totalEpochs: p.totalEpochs,
          batch: p.batch,
          totalBatches: p.totalBatches,
          loss: p.loss,
          valLoss: p.valLoss,
          imagesPerSec: p.imagesPerSec,
          etaSec: p.etaSec,
          checkpoint: rel(p.checkpoint),
          ...(gpu !== undefined ? { gpu } : {}),
        }),
    });
  } catch (err) {
    await tracker.close(err instanceof TrainingCancelled ? 'KILLED' : 'FAILED');
    if (err instanceof TrainingCancelled)
      hooks.progress({ stage: 'train', checkpoint: rel(err.checkpoint), message: err.message });
    throw err;
  }

  // best/ holds the weights of the best validation epoch (from the best checkpoint).
  const bestDir = join(ctx.stepDir, 'best');
  if (result.bestCheckpoint) {
    const best = await loadModel(join(result.bestCheckpoint, 'model'));
    await saveModel(best, bestDir);
    best.dispose();
  } else {
    await saveModel(result.model, bestDir);
  }
  result.model.dispose();
  const historyPath = join(ctx.stepDir, 'history.json');
  await writeJsonAtomic(historyPath, result.history);
  const summary: Record<string, JsonValue> = {
    modelKind: 'autoencoder',
    model: `U-Net-lite autoencoder, widths ${cfg.model.widths.join(',')}`,
    backend: backend.name,
    engine: result.engine.name,
    // What ran the steps (the tfjs backend above only matters for engine 'tfjs').
    runtime: result.engine.runtime ?? null,
    executionProvider: result.engine.executionProvider ?? null,
    threads: result.engine.threads ?? null,
    // Later shares of the host's cores (other trainings there started or ended): [{epoch, threads}].
    threadChanges: result.engine.threadChanges,
    gpu: result.engine.gpu ?? gpu ?? null,
    deviceFallback: result.engine.deviceFallback ?? null,
    epochsRun: result.epochsRun,
    totalEpochs: plannedEpochs(cfg, trainSplit.count),
    bestEpoch: result.bestEpoch,
    bestValLoss: result.bestValLoss,
    finalLoss: result.history.at(-1)?.loss ?? null,
    stoppedEarly: result.stoppedEarly,
    resumedFrom: rel(result.resumedFrom ?? undefined) ?? null,
    imagesPerSec: result.meanImagesPerSec,
    trainSeconds: Math.round(result.trainSeconds * 10) / 10,
    peakRssMiB: peakRssMiB(),
  };
  const metadataPath = join(ctx.stepDir, 'metadata.json');
  await writeJsonAtomic(metadataPath, {
    ...summary,
    backendInfo: backendInfoJson(backend),
    engineInfo: { ...result.engine },
    mixedPrecision: backend.mixedPrecision,
    perceptualLoss: result.perceptual,
    lossWeights: result.lossWeights,
    // The training objective: inputs with these pasted patches, clean images as targets.
    syntheticDefects: cfg.synthetic_defects,
    tfjsVersion: tf.version.tfjs,
    images: { train: trainSplit.count, val: valSplit?.count ?? 0, size: trainSplit.size },
  });
  await tracker.logArtifacts([{ path: historyPath }, { path: metadataPath }]);
  await tracker.close('FINISHED');
  const outputs = [
    await artifact(ctx, 'best_model', join(bestDir, 'model.json')),
    await artifact(ctx, 'best_weights', join(bestDir, 'weights.bin')),
    await artifact(ctx, 'history', historyPath),
    await artifact(ctx, 'metadata', metadataPath),
  ];
  hooks.progress({
    stage: 'train',
    epoch: result.epochsRun,
    totalEpochs: plannedEpochs(cfg, trainSplit.count),
    checkpoint: rel(result.lastCheckpoint ?? undefined),
    message: 'done',
  });
  return finishStep(ctx, 'train', startedAt, outputs, {
    ...summary,
    bestCheckpoint: rel(result.bestCheckpoint ?? undefined) ?? null,
  });
};

/**
 * The training loop: seeded batches from the uint8 cache (augmented per config), Adam/AdamW with
 * global-norm gradient clipping, per-epoch LR schedule, validation pass, early stopping, checkpoints
 * (periodic, best, and on cancellation) and resume from the newest valid checkpoint.
 *
 * Reproducibility: one Rng (seeded by config.seed) drives the data order, the augmentation and the
 * synthetic defects; its state is checkpointed, so an interrupted and resumed run sees the same
 * batches as an uninterrupted one and ends at the same epoch count.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import type { SyntheticDefectsConfig, TrainingConfig } from '../config/schema';
import { applySyntheticDefects } from '../data/anomaly-generator';
import { augmentBatch, toFloatBatch } from '../data/augment';
import type { CachedSplit } from '../data/tensor-cache';
import type { LossTerm } from '../models/autoencoder/losses';
import { createLoss } from '../models/autoencoder/losses';
import { buildUNetLite } from '../models/autoencoder/unet';
import type { RunTracker } from '../monitor/tracker';
import { configHash } from '../package/package';
import { Rng } from '../util/rng';
import {
  BEST_CHECKPOINT,
  type EpochRecord,
  epochCheckpointName,
  findLatestValidCheckpoint,
  loadCheckpoint,
  type PartialEpoch,
  pruneCheckpoints,
  saveCheckpoint,
  type TrainState,
} from './checkpoints';
import { EarlyStopping } from './early-stopping';
import { createTrainEngine, type TrainEngine, type TrainEngineRuntime } from './engine';
import { LrSchedule } from './schedule';
import { createOptimizer } from './tfjs-train-engine';
import { threadBudget } from './thread-budget';

export interface TrainLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface TrainProgress {
  stage: 'train' | 'validate' | 'checkpoint';
  epoch: number;
  totalEpochs: number;
  batch: number;
  totalBatches: number;
  loss?: number;
  terms?: Partial<Record<LossTerm, number>>;
  valLoss?: number;
  imagesPerSec?: number;
  etaSec?: number;
  /** Absolute path of the newest checkpoint written so far. */
  checkpoint?: string;
}

export interface TrainOptions {
  config: TrainingConfig;
  train: CachedSplit;
  /** Validation split; null or empty: the epoch's training loss stands in for it. */
  val: CachedSplit | null;
  /** Folder holding `epoch-NNNN/` and `best/` checkpoints. */
  checkpointDir: string;
  /** Resume from this checkpoint folder (else the newest valid one in checkpointDir, if any). */
  resumeFrom?: string | null;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  tracker?: RunTracker | null;
  logger?: TrainLogger;
  /** Log reconstruction images every N epochs (0: never). Default 5. */
  imageEvery?: number;
}

export interface TrainResult {
  model: tf.LayersModel;
  history: EpochRecord[];
  epochsRun: number;
  bestEpoch: number | null;
  bestValLoss: number | null;
  stoppedEarly: boolean;
  resumedFrom: string | null;
  bestCheckpoint: string | null;
  lastCheckpoint: string | null;
  perceptual: { enabled: boolean; statement: string };
  lossWeights: Record<LossTerm, number>;
  trainSeconds: number;
  meanImagesPerSec: number | null;
  /**
   * The training engine (lib/train/engine) and why it was chosen; `threads` is the count it started
   * with, `threadChanges` when (1-based epoch) it took another share of the host's cores.
   */
  engine: {
    name: string;
    description: string;
    reason: string;
    threadChanges: { epoch: number; threads: number }[];
  } & Partial<TrainEngineRuntime>;
}

/** Thrown after the cancellation checkpoint is written. */
export class TrainingCancelled extends Error {
  constructor(readonly checkpoint: string) {
    super(`training cancelled; state saved in ${checkpoint}`);
    this.name = 'TrainingCancelled';
  }
}

const noopLogger: TrainLogger = { info: () => {}, warn: () => {} };

function batchTensor(data: Float32Array, n: number, size: number): tf.Tensor4D {
  return tf.tensor4d(data, [n, size, size, 3]);
}

/** Mean loss over the validation split, on the training engine (same loss, current weights). */
async function validate(engine: TrainEngine, val: CachedSplit, batchSize: number): Promise<number> {
  let sum = 0;
  for (let start = 0; start < val.count; start += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, val.count - start) }, (_, i) => start + i);
    sum += (await engine.evaluate(toFloatBatch(val.images, idx, val.size), idx.length)) * idx.length;
  }
  return sum / val.count;
}

/**
 * Rows of `n` images: clean, its reconstruction and, when synthetic defects are on, the same images
 * with defects (a fixed draw, every image) and their reconstruction: whether the network removes them.
 */
async function reconstructionPng(
  model: tf.LayersModel,
  split: CachedSplit,
  n: number,
  defects: SyntheticDefectsConfig,
): Promise<Uint8Array> {
  const k = Math.min(n, split.count);
  const idx = Array.from({ length: k }, (_, i) => i);
  const s = split.size;
  const clean = toFloatBatch(split.images, idx, s);
  const damaged =
    defects.probability > 0
      ? applySyntheticDefects(clean, k, s, { ...defects, probability: 1 }, new Rng(0x5eed))
      : null;
  const pixels = tf.tidy(() => {
    const row = (t: tf.Tensor4D) => tf.concat(tf.unstack(t), 1); // [s, k*s, 3]
    const rows: tf.Tensor[] = [];
    for (const images of damaged ? [clean, damaged] : [clean]) {
      const x = batchTensor(images, k, s);
      rows.push(row(x), row(model.predict(x) as tf.Tensor4D));
    }
    return tf.concat(rows, 0).mul(255).clipByValue(0, 255).cast('int32');
  });
  const data = Uint8Array.from(pixels.dataSync());
  const height = pixels.shape[0];
  pixels.dispose();
  return sharp(data, { raw: { width: k * s, height, channels: 3 } })
    .png()
    .toBuffer();
}

/**
 * Epochs to train: `epochs`, or with `min_steps` set, at least enough epochs for that many optimiser
 * steps (batches). 48 images at batch 32 make 2 steps an epoch: 40 epochs are 80 steps, far from
 * converged, where 400 images make 520.
 */
export function plannedEpochs(
  cfg: Pick<TrainingConfig, 'epochs' | 'batch_size' | 'min_steps'>,
  images: number,
): number {
  if (!cfg.min_steps || images === 0) return cfg.epochs;
  const perEpoch = Math.ceil(images / Math.min(cfg.batch_size, images));
  return Math.max(cfg.epochs, Math.ceil(cfg.min_steps / perEpoch));
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { config: cfg, train: data, checkpointDir } = opts;
  const log = opts.logger ?? noopLogger;
  const val = opts.val && opts.val.count > 0 ? opts.val : null;
  if (data.count === 0) throw new Error('no training images');
  if (data.size !== cfg.image_size) {
    throw new Error(`tensor cache holds ${data.size}px images but training.image_size is ${cfg.image_size}`);
  }
  const batchSize = Math.min(cfg.batch_size, data.count);
  const batchesPerEpoch = Math.ceil(data.count / batchSize);
  const totalEpochs = plannedEpochs(cfg, data.count);
  const imageEvery = opts.imageEvery ?? 5;
  const hash = configHash(cfg);

  const model = buildUNetLite({ imageSize: cfg.image_size, widths: cfg.model.widths, seed: cfg.seed });
  const optimizer = createOptimizer(cfg);
  const loss = await createLoss(cfg.loss, cfg.image_size);
  const schedule = new LrSchedule(cfg.lr_schedule, cfg.optimizer.lr, totalEpochs);
  const early = new EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta);
  const rng = new Rng(cfg.seed);
  let state: TrainState = {
    epoch: 0,
    totalEpochs,
    rngState: rng.state,
    schedule: schedule.state,
    early: early.state,
    history: [],
    partial: null,
    configHash: hash,
  };

  const resumeDir = opts.resumeFrom ?? (await findLatestValidCheckpoint(checkpointDir, (m) => log.warn(m)));
  if (resumeDir) {
    state = await loadCheckpoint(resumeDir, model, optimizer);
    if (state.configHash !== hash) {
      log.warn(`resuming from ${resumeDir} although the training config changed since it was written`);
    }
    schedule.state = state.schedule;
    early.state = state.early;
    rng.state = state.rngState;
    log.info(`resumed from ${resumeDir} after epoch ${state.epoch}/${totalEpochs}`);
    await opts.tracker?.markResumed(state.epoch + 1);
  }

  const { engine, reason: engineReason } = await createTrainEngine({
    model,
    optimizer,
    loss,
    config: cfg,
    backend: tf.getBackend(),
  });
  log.info(`training engine ${engine.description} (${engineReason})`);
  if (engine.name !== 'onnx' && loss.perceptual.onnx) {
    loss.disableOnnxPerceptual(
      `the backbone perceptual term (loss.perceptual_backbone) runs on the ONNX Runtime training engine only, and this run trains on ${engine.name}`,
    );
    log.warn(`perceptual loss ${loss.perceptual.statement}`);
  }

  let lastCheckpoint: string | null = resumeDir;
  let bestCheckpoint: string | null =
    early.state.bestEpoch !== null ? join(checkpointDir, BEST_CHECKPOINT) : null;
  const snapshot = (partial: PartialEpoch | null): TrainState => ({
    ...state,
    rngState: partial ? partial.rngState : rng.state,
    schedule: schedule.state,
    early: early.state,
    partial,
  });
  const started = performance.now();
  let imagesSeen = 0;
  let computeSeconds = 0;
  const threadChanges: { epoch: number; threads: number }[] = [];
  const startThreads = engine.runtime?.threads;

  try {
    while (state.epoch < totalEpochs && !early.stopped) {
      const epoch = state.epoch; // 0-based index of the epoch being run
      // This host's other trainings started or ended: take the new share of its cores.
      // (Not when the config fixes training.threads.)
      const share = cfg.threads === null ? threadBudget() : null;
      const current = engine.runtime?.threads;
      if (share !== null && engine.setThreads && current !== undefined && share !== current) {
        await engine.setThreads(share);
        threadChanges.push({ epoch: epoch + 1, threads: share });
        log.info(
          `training threads ${current} -> ${share} from epoch ${epoch + 1} (${share > current ? 'other trainings on this host ended' : 'another training started on this host'})`,
        );
      }
      const lr = schedule.lrForEpoch(epoch);
      // A partial epoch (cancelled mid-way) continues with its saved order and RNG.
      const p = state.partial && state.partial.epoch === epoch ? state.partial : null;
      const order = p ? p.order : rng.shuffle(Array.from({ length: data.count }, (_, i) => i));
      if (p) rng.state = p.rngState;
      let lossSum = p?.lossSum ?? 0;
      const termSums: Record<string, number> = { ...(p?.termSums ?? {}) };
      let seen = p?.seen ?? 0;
      let epochSeconds = p?.seconds ?? 0;
      let tEpoch = performance.now();
      for (let b = p?.nextBatch ?? 0; b < batchesPerEpoch; b++) {
        if (opts.signal?.aborted) {
          epochSeconds += (performance.now() - tEpoch) / 1000;
          await engine.syncToModel();
          const partial: PartialEpoch = {
            epoch,
            nextBatch: b,
            order,
            rngState: rng.state,
            lossSum,
            termSums,
            seen,
            seconds: epochSeconds,
          };
          const dir = await saveCheckpoint(
            checkpointDir,
            epochCheckpointName(epoch),
            model,
            optimizer,
            snapshot(partial),
          );
          log.warn(`cancelled in epoch ${epoch + 1}, batch ${b}; checkpoint ${dir}`);
          throw new TrainingCancelled(dir);
        }
        const idx = order.slice(b * batchSize, (b + 1) * batchSize);
        const t0 = performance.now();
        const clean = augmentBatch(data.images, idx, data.size, cfg.augmentation, rng);
        const inputs = applySyntheticDefects(clean, idx.length, data.size, cfg.synthetic_defects, rng);
        const out = await engine.step(inputs, idx.length, lr, clean);
        const dt = (performance.now() - t0) / 1000;
        computeSeconds += dt;
        imagesSeen += idx.length;
        lossSum += out.loss * idx.length;
        for (const [k, v] of Object.entries(out.terms)) termSums[k] = (termSums[k] ?? 0) + v * idx.length;
        seen += idx.length;
        const ips = imagesSeen / computeSeconds;
        const remainingImages =
          (batchesPerEpoch - b - 1) * batchSize + (totalEpochs - epoch - 1) * data.count;
        opts.onProgress?.({
          stage: 'train',
          epoch: epoch + 1,
          totalEpochs,
          batch: b + 1,
          totalBatches: batchesPerEpoch,
          loss: out.loss,
          terms: out.terms,
          imagesPerSec: ips,
          etaSec: remainingImages / ips,
          checkpoint: lastCheckpoint ?? undefined,
        });
        if (!Number.isFinite(out.loss))
          throw new Error(`loss is ${out.loss} at epoch ${epoch + 1}, batch ${b + 1}`);
      }
      epochSeconds += (performance.now() - tEpoch) / 1000;
      tEpoch = performance.now();
      await engine.syncToModel(); // checkpoints and image logs read the tfjs model
      const trainLoss = lossSum / seen;
      opts.onProgress?.({
        stage: 'validate',
        epoch: epoch + 1,
        totalEpochs,
        batch: batchesPerEpoch,
        totalBatches: batchesPerEpoch,
      });
      const valLoss = val ? await validate(engine, val, batchSize) : trainLoss;
      const terms = Object.fromEntries(Object.entries(termSums).map(([k, v]) => [k, v / seen]));
      const record: EpochRecord = {
        epoch: epoch + 1,
        lr,
        loss: trainLoss,
        terms,
        valLoss,
        imagesPerSec: seen / Math.max(epochSeconds, 1e-9),
        seconds: epochSeconds,
      };
      schedule.observe(valLoss);
      const improved = early.update(valLoss, epoch + 1);
      state = { ...state, epoch: epoch + 1, history: [...state.history, record], partial: null };

      opts.onProgress?.({
        stage: 'checkpoint',
        epoch: epoch + 1,
        totalEpochs,
        batch: batchesPerEpoch,
        totalBatches: batchesPerEpoch,
        valLoss,
      });
      if (improved)
        bestCheckpoint = await saveCheckpoint(
          checkpointDir,
          BEST_CHECKPOINT,
          model,
          optimizer,
          snapshot(null),
        );
      const last = state.epoch === totalEpochs || early.stopped;
      if (state.epoch % cfg.checkpoint.every_epochs === 0 || last) {
        lastCheckpoint = await saveCheckpoint(
          checkpointDir,
          epochCheckpointName(state.epoch),
          model,
          optimizer,
          snapshot(null),
        );
        await pruneCheckpoints(checkpointDir, cfg.checkpoint.keep_last);
      }
      log.info(
        `epoch ${state.epoch}/${totalEpochs} loss ${trainLoss.toFixed(5)} val ${valLoss.toFixed(5)} lr ${lr.toExponential(2)} ${record.imagesPerSec.toFixed(1)} img/s${improved ? ' (best)' : ''}`,
      );
      if (opts.tracker) {
        const scalars: Record<string, number> = {
          'loss/total': trainLoss,
          'val/loss': valLoss,
          lr,
          images_per_sec: record.imagesPerSec,
        };
        for (const [k, v] of Object.entries(terms)) scalars[`loss/${k}`] = v;
        await opts.tracker.logScalars(state.epoch, scalars);
        if (imageEvery > 0 && (state.epoch % imageEvery === 0 || state.epoch === 1 || last)) {
          const png = await reconstructionPng(model, val ?? data, 4, cfg.synthetic_defects);
          await opts.tracker.logImages(state.epoch, [{ tag: 'reconstruction', png }]);
        }
      }
      opts.onProgress?.({
        stage: 'train',
        epoch: state.epoch,
        totalEpochs,
        batch: batchesPerEpoch,
        totalBatches: batchesPerEpoch,
        loss: trainLoss,
        valLoss,
        checkpoint: lastCheckpoint ?? undefined,
      });
      if (early.stopped)
        log.info(`early stopping after epoch ${state.epoch} (best ${early.state.bestEpoch})`);
    }
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    await engine.release();
    loss.dispose();
    optimizer.dispose();
  }
  const es = early.state;
  return {
    model,
    history: state.history,
    epochsRun: state.epoch,
    bestEpoch: es.bestEpoch,
    bestValLoss: es.best,
    stoppedEarly: es.stopped,
    resumedFrom: resumeDir,
    bestCheckpoint,
    lastCheckpoint,
    perceptual: { enabled: loss.perceptual.enabled, statement: loss.perceptual.statement },
    lossWeights: loss.weights,
    trainSeconds: (performance.now() - started) / 1000,
    meanImagesPerSec: computeSeconds > 0 ? imagesSeen / computeSeconds : null,
    engine: {
      name: engine.name,
      description: engine.description,
      reason: engineReason,
      ...(engine.runtime ?? { runtime: `tfjs ${tf.version.tfjs} ${tf.getBackend()}` }),
      ...(engine.runtime?.threads !== undefined
        ? { threads: threadChanges.length ? startThreads : engine.runtime.threads }
        : {}),
      threadChanges,
    },
  };
}

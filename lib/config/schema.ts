import { z } from 'zod';

/**
 * Training configuration: `config/training.yaml` (key `training`), merged with the per-category
 * overrides of `config/categories.yaml`, the pipeline YAML's `training:` block and CLI flags.
 * Keys are snake_case because they are what users type in YAML.
 */
const positiveInt = z.number().int().positive();
const unit = z.number().min(0).max(1);

export const augmentationSchema = z
  .object({
    enabled: z.boolean().default(true),
    rotation_limit: z.number().min(0).max(180).default(30),
    hflip: z.boolean().default(true),
    vflip: z.boolean().default(false),
    noise_factor: z.number().min(0).max(1).default(0.05),
    brightness_limit: unit.default(0.2),
    contrast_limit: unit.default(0.2),
  })
  .strict();

/** Patches pasted into training inputs, to be removed by the network (lib/data/synthetic-defects). */
export const syntheticDefectsSchema = z
  .object({
    /** Share of training images that get defects; 0 turns them off (plain reconstruction). */
    probability: unit.default(0.5),
    /** Defects per chosen image: 1 to max_count. */
    max_count: z.number().int().min(1).max(8).default(2),
    /** Side of a defect, as a fraction of the image side. */
    min_size: z.number().gt(0).max(1).default(0.05),
    max_size: z.number().gt(0).max(1).default(0.25),
    /**
     * 'patches': rectangles/ellipses cut from the image or flat colours (lib/data/synthetic-defects);
     * 'realistic': Perlin-noise regions and thin strokes blended with self, other-image, shuffled-tile,
     * procedural, colour-shift and blur sources (lib/data/anomaly-generator; area min_size² to max_size²).
     */
    generator: z.enum(['patches', 'realistic']).default('patches'),
  })
  .strict()
  .refine((d) => d.min_size <= d.max_size, {
    message: 'min_size must not exceed max_size',
    path: ['min_size'],
  });

export const lossSchema = z
  .object({
    mse: z.number().min(0).default(1.0),
    ssim: z.number().min(0).default(0.5),
    perceptual: z.number().min(0).default(0.1),
    edge: z.number().min(0).default(0.2),
    /** Folder of a frozen tfjs feature extractor (model.json); none: documented fallback. */
    perceptual_model: z.string().nullable().default(null),
    /**
     * Without a perceptual_model: the pretrained backbone's early features (lib/models/autoencoder/
     * perceptual-graph) on the ONNX Runtime engine. `auto`: when the backbone is installed
     * (requirements-backbone.txt), else the term is off and the run metadata says why; `none`: off.
     */
    perceptual_backbone: z.enum(['auto', 'efficientnet-lite0', 'none']).default('none'),
  })
  .strict();

/** Detector kinds (lib/models/<kind>): reconstruction autoencoder, or feature-memory PatchCore. */
export const MODEL_KINDS = ['autoencoder', 'patchcore', 'draem'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

/**
 * PatchCore (Roth et al. 2022): locally aware patch features of a frozen ImageNet backbone, a memory
 * bank of good patches thinned by greedy k-center coreset selection, nearest-neighbour distance as
 * the anomaly score. Defaults follow the paper (3x3 neighbourhood, 10 % coreset, Gaussian sigma 4).
 */
export const patchcoreSchema = z
  .object({
    backbone: z
      .enum(['efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2'])
      // Lite2 measured best on real photographs (docs/RESULTS.md): +0.016 image AUROC, +0.026 AUPRO
      // over lite0 on 8 texture categories, at the same fit time.
      .default('efficientnet-lite2'),
    /**
     * Feature stages by output stride. The paper's layers 2 + 3 are strides 8 and 16; the stride-4
     * stage, pooled to the patch grid, adds local colour and contrast (+0.045 image AUROC on real
     * textures, docs/RESULTS.md).
     */
    strides: z
      .array(z.union([z.literal(4), z.literal(8), z.literal(16), z.literal(32)]))
      .min(1)
      .default([4, 8, 16]),
    /**
     * Stride of the patch grid; null: the finest stage's. Finer stages are average-pooled down to it,
     * coarser ones upsampled. 8: a 32x32 grid at 256 px, as the paper's.
     */
    patch_stride: z
      .union([z.literal(4), z.literal(8), z.literal(16)])
      .nullable()
      .default(8),
    /** Side of the neighbourhood each patch feature averages over. */
    neighbourhood: z.number().int().min(1).max(7).default(3),
    /** Share of the training patches kept in the memory bank. */
    coreset_ratio: z.number().gt(0).max(1).default(0.1),
    /** Upper bound of the bank (bounds package size and scoring time). */
    max_bank_size: positiveInt.default(16384),
    /** Dimension of the random projection the coreset selection measures distances in. */
    projection_dim: positiveInt.default(128),
    /** Gaussian smoothing of the upsampled patch-score map, in pixels at the input size. */
    smoothing_sigma: z.number().min(0).default(4),
  })
  .strict();
export type PatchcoreConfig = z.infer<typeof patchcoreSchema>;

/**
 * DRAEM (Zavrtanik et al. 2021), no pretrained weights: a reconstructive U-Net trained to remove
 * synthetic anomalies (lib/data/anomaly-generator) and a discriminative U-Net on (input, reconstruction)
 * trained to segment them; the anomaly map is its mask probability. Trained by optimiser steps, not
 * epochs: small datasets would otherwise take a handful of steps per epoch.
 */
export const draemSchema = z
  .object({
    recon_widths: z.array(positiveInt).min(1).max(6).default([16, 32, 64, 128]),
    disc_widths: z.array(positiveInt).min(1).max(6).default([16, 32, 64]),
    /** Optimiser steps (batches) to train for, whatever the dataset size. */
    steps: positiveInt.default(1500),
    batch_size: positiveInt.default(8),
    /** Adam learning rate at the start; cosine decay to 1 % of it over `steps`. */
    lr: z.number().positive().default(5e-4),
    l2_weight: z.number().min(0).default(1),
    ssim_weight: z.number().min(0).default(1),
    focal_weight: z.number().min(0).default(1),
    focal_gamma: z.number().min(0).default(2),
    /** Share of training images that get synthetic anomalies (the rest teach "nothing to find"). */
    anomaly_probability: unit.default(0.5),
    /** Gaussian smoothing of the mask-probability map, in pixels at the input size (0: none). */
    smoothing_sigma: z.number().min(0).default(2),
    /** Side of the window the image score averages the map over, at 256 px (scaled to the input). */
    score_window: positiveInt.default(21),
    /** A resumable checkpoint every this many steps. */
    checkpoint_every: positiveInt.default(100),
  })
  .strict();
export type DraemConfig = z.infer<typeof draemSchema>;

export const lrScheduleSchema = z
  .object({
    name: z.enum(['constant', 'cosine', 'step', 'plateau']).default('cosine'),
    min_lr: z.number().min(0).default(1e-6),
    step_epochs: positiveInt.default(30),
    gamma: z.number().positive().max(1).default(0.5),
    plateau_patience: positiveInt.default(5),
  })
  .strict();

export const anomalyMapSchema = z
  .object({
    mse_weight: z.number().min(0).default(1.0),
    ssim_weight: z.number().min(0).default(1.0),
    smoothing_sigma: z.number().min(0).default(2),
    score: z.enum(['max', 'topk_mean']).default('max'),
    topk: positiveInt.default(50),
    /**
     * Share of the image side, on each edge, that the image score ignores (the map and pixel metrics
     * keep every pixel): zero-padded convolutions reconstruct the outermost pixels worst.
     */
    score_border: z.number().min(0).max(0.25).default(0.05),
  })
  .strict();

export const thresholdSchema = z
  .object({
    strategy: z.enum(['f1', 'percentile', 'mean_std', 'fpr', 'youden']).default('percentile'),
    percentile: z.number().min(0).max(100).default(99),
    k: z.number().min(0).default(3),
    fpr: unit.default(0.01),
    pixel_percentile: z.number().min(0).max(100).default(99.5),
  })
  .strict();

export const trainingConfigSchema = z
  .object({
    image_size: positiveInt.default(128),
    batch_size: positiveInt.default(32),
    epochs: positiveInt.default(100),
    /**
     * At least this many optimiser steps (batches), whatever the dataset size: the epochs become
     * max(epochs, ceil(min_steps / batches per epoch)). null: `epochs` alone.
     */
    min_steps: positiveInt.nullable().default(null),
    seed: z.number().int().default(42),
    val_fraction: z.number().gt(0).lt(1).default(0.2),
    optimizer: z
      .object({
        name: z.enum(['adam', 'adamw']).default('adam'),
        lr: z.number().positive().default(1e-4),
        weight_decay: z.number().min(0).default(0),
      })
      .strict()
      .default({ name: 'adam', lr: 1e-4, weight_decay: 0 }),
    lr_schedule: lrScheduleSchema.default(lrScheduleSchema.parse({})),
    early_stopping: z
      .object({ patience: positiveInt.default(10), min_delta: z.number().min(0).default(0) })
      .strict()
      .default({ patience: 10, min_delta: 0 }),
    grad_clip: z.number().positive().nullable().default(1.0),
    mixed_precision: z.enum(['auto', 'off']).default('auto'),
    backend: z.enum(['auto', 'wasm', 'webgpu', 'tensorflow', 'cpu']).default('auto'),
    engine: z.enum(['auto', 'onnx', 'tfjs']).default('auto'),
    /**
     * ONNX Runtime execution provider of training and scoring sessions (lib/onnx/execution-provider):
     * auto (cuda, then webgpu, when one initialises; else cpu; ANOMALY_SPOTTER_DEVICE sets the host's
     * default) | cpu | cuda | webgpu (an error when it does not initialise).
     */
    device: z.enum(['auto', 'cpu', 'webgpu', 'cuda']).default('auto'),
    threads: positiveInt.nullable().default(null),
    model: z
      .object({
        /** Absent: autoencoder (configs written before model kinds existed). */
        kind: z.enum(MODEL_KINDS).optional(),
        widths: z.array(positiveInt).min(1).max(6).default([16, 32, 64, 128]),
        /** Settings of the patchcore kind (ignored by the autoencoder). */
        patchcore: patchcoreSchema.optional(),
        /** Settings of the draem kind (ignored by the other kinds). */
        draem: draemSchema.optional(),
      })
      .strict()
      .default({ widths: [16, 32, 64, 128] }),
    loss: lossSchema.default(lossSchema.parse({})),
    augmentation: augmentationSchema.default(augmentationSchema.parse({})),
    synthetic_defects: syntheticDefectsSchema.default(syntheticDefectsSchema.parse({})),
    checkpoint: z
      .object({ every_epochs: positiveInt.default(1), keep_last: positiveInt.default(3) })
      .strict()
      .default({ every_epochs: 1, keep_last: 3 }),
    data: z
      .object({ on_corrupt: z.enum(['skip', 'fail']).default('skip') })
      .strict()
      .default({ on_corrupt: 'skip' }),
    anomaly_map: anomalyMapSchema.default(anomalyMapSchema.parse({})),
    threshold: thresholdSchema.default(thresholdSchema.parse({})),
  })
  .strict();

export type TrainingConfig = z.infer<typeof trainingConfigSchema>;
export type AugmentationConfig = z.infer<typeof augmentationSchema>;
export type SyntheticDefectsConfig = z.infer<typeof syntheticDefectsSchema>;
export type LossConfig = z.infer<typeof lossSchema>;
export type AnomalyMapConfig = z.infer<typeof anomalyMapSchema>;
export type ThresholdConfig = z.infer<typeof thresholdSchema>;

/** The detector kind a config trains (absent: autoencoder). */
export function modelKind(cfg: TrainingConfig): ModelKind {
  return cfg.model.kind ?? 'autoencoder';
}

/** The patchcore settings with their defaults filled in. */
export function patchcoreConfig(cfg: TrainingConfig): PatchcoreConfig {
  return patchcoreSchema.parse(cfg.model.patchcore ?? {});
}

export function draemConfig(cfg: TrainingConfig): DraemConfig {
  return draemSchema.parse(cfg.model.draem ?? {});
}

/** The defaults of the original system, as a fully-populated object. */
export function defaultTrainingConfig(): TrainingConfig {
  return trainingConfigSchema.parse({});
}

/** A nested override of any subset of keys (config layers, CLI flags). Arrays are replaced whole. */
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/**
 * A random-init, tiny model package (32 px, widths [4, 8]) with a hand-made calibration, for serving and
 * package tests: exercises the real export/load/inference path in well under a second.
 */
import '@tensorflow/tfjs-backend-wasm';
import { mkdir } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { anomalyMapSchema, defaultTrainingConfig, type TrainingConfig } from '../../lib/config/schema';
import type { Calibration } from '../../lib/eval/calibration';
import { saveModel } from '../../lib/model/io';
import { buildUNetLite } from '../../lib/models/autoencoder/unet';
import { exportModelPackage, sealPackage } from '../../lib/package/package';

export async function useWasm(): Promise<void> {
  if (tf.getBackend() !== 'wasm') await tf.setBackend('wasm');
  await tf.ready();
}

export function tinyConfig(imageSize = 32): TrainingConfig {
  const cfg = defaultTrainingConfig();
  return { ...cfg, image_size: imageSize, model: { widths: [4, 8] }, epochs: 1 };
}

export function tinyCalibration(imageSize = 32, over: Partial<Calibration> = {}): Calibration {
  return {
    imageThreshold: 0.5,
    pixelThreshold: 0.3,
    scoreNorm: { min: 0, max: 1 },
    strategy: 'percentile',
    anomalyMap: anomalyMapSchema.parse({ smoothing_sigma: 1 }),
    imageSize,
    ...over,
  };
}

export interface TinyPackageOptions {
  category?: string;
  runId?: string;
  pipeline?: string;
  imageSize?: number;
  widths?: number[];
  /** null: leave the package uncalibrated. */
  calibration?: Calibration | null;
}

/** Exports a package to `packageDir` (its model is saved to a sibling temp folder first). */
export async function makeTinyPackage(packageDir: string, opts: TinyPackageOptions = {}): Promise<void> {
  await useWasm();
  const imageSize = opts.imageSize ?? 32;
  const config = { ...tinyConfig(imageSize), model: { widths: opts.widths ?? [4, 8] } };
  const modelDir = `${packageDir}.model`;
  await mkdir(modelDir, { recursive: true });
  const model = buildUNetLite({ imageSize, widths: config.model.widths, seed: 7 });
  await saveModel(model, modelDir);
  model.dispose();
  // Like a pipeline: the checkpoint step's uncalibrated package, then the package step's sealed copy.
  const uncalibrated = opts.calibration === null ? packageDir : `${packageDir}.uncalibrated`;
  await exportModelPackage({
    modelDir,
    packageDir: uncalibrated,
    category: opts.category ?? 'widget',
    pipeline: opts.pipeline ?? 'test',
    runId: opts.runId ?? 'run-1',
    config,
    training: { epochs: 1, bestEpoch: 1, bestValLoss: 0.1, backend: 'wasm' },
  });
  if (opts.calibration !== null)
    await sealPackage({
      fromDir: uncalibrated,
      packageDir,
      calibration: opts.calibration ?? tinyCalibration(imageSize),
    });
}

/** A small deterministic test picture: gradient with a bright square ("defect") if `defect`. */
export async function testImage(
  format: 'png' | 'jpeg' | 'webp' | 'tiff' = 'png',
  opts: { size?: number; defect?: boolean } = {},
): Promise<Buffer> {
  const size = opts.size ?? 48;
  const data = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      const inDefect = opts.defect && x > size / 3 && x < size / 2 && y > size / 3 && y < size / 2;
      data[i] = inDefect ? 255 : 60 + x;
      data[i + 1] = inDefect ? 255 : 80 + y;
      data[i + 2] = inDefect ? 40 : 120;
    }
  }
  return sharp(data, { raw: { width: size, height: size, channels: 3 } })
    .toFormat(format)
    .toBuffer();
}

/** Tiny in-memory datasets and configs for model/train tests (32 px, a handful of images). */

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TrainingConfig, trainingConfigSchema } from '../../lib/config/schema';
import { synthesizeDataset } from '../../lib/data/synth';
import { type CachedSplit, writeTensorCache } from '../../lib/data/tensor-cache';
import type { StepContext } from '../../lib/steps/contracts';
import { artifact, finishStep } from '../../lib/steps/result';

/** Smooth random-ish patterns (deterministic per seed) so the autoencoder has something to learn. */
export function tinySplit(
  count: number,
  size = 32,
  seed = 1,
  split: CachedSplit['split'] = 'train',
): CachedSplit {
  const images = new Uint8Array(count * size * size * 3);
  let s = seed;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
  for (let n = 0; n < count; n++) {
    const fx = 1 + rnd() * 3;
    const fy = 1 + rnd() * 3;
    const ph = rnd() * 6;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) {
          const v =
            0.5 + 0.4 * Math.sin(((fx * x) / size) * 6.28 + ph + c) * Math.cos(((fy * y) / size) * 6.28);
          images[((n * size + y) * size + x) * 3 + c] = Math.round(v * 255);
        }
  }
  const records = Array.from({ length: count }, (_, i) => ({
    id: `${split}/${i}`,
    source: `widget/train/good/${split}${i}.png`,
    split,
    defectType: 'good',
    label: 0 as const,
    maskSource: null,
  }));
  return {
    split,
    count,
    size,
    channels: 3,
    images,
    masks: split === 'test' ? new Uint8Array(count * size * size) : null,
    records,
  };
}

export function tinyConfig(overrides: Record<string, unknown> = {}): TrainingConfig {
  return trainingConfigSchema.parse({
    image_size: 32,
    batch_size: 4,
    epochs: 2,
    seed: 7,
    model: { widths: [4, 8] },
    optimizer: { name: 'adam', lr: 1e-3, weight_decay: 0 },
    loss: { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0.1, perceptual_model: null },
    augmentation: { enabled: true },
    backend: 'wasm',
    ...overrides,
  });
}

/** Loose tolerance comparison helper: max |a-b| / max(1, max |a|). */
export function relMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 1;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(a[i]));
  }
  return d / s;
}

/** A run directory with a finished preprocess step (tensor cache of tiny splits) and a train ctx. */
export async function preprocessedRun(
  trainCount = 8,
  valCount = 4,
): Promise<{
  runDir: string;
  ctx(config: TrainingConfig): StepContext;
}> {
  const runDir = await mkdtemp(join(tmpdir(), 'train-run-'));
  const base = (step: string, config: TrainingConfig, inputs: StepContext['inputs']): StepContext => ({
    runDir,
    pipeline: 'test',
    runId: 'r1',
    category: 'widget',
    dataRoot: join(runDir, 'data'),
    step,
    stepDir: join(runDir, 'widget', step),
    config,
    params: {},
    inputs,
  });
  const pre = base('preprocess', tinyConfig(), {});
  const tr = tinySplit(trainCount, 32, 1, 'train');
  const va = tinySplit(valCount, 32, 2, 'val');
  const te = tinySplit(2, 32, 3, 'test');
  await writeTensorCache(
    pre.stepDir,
    { category: 'widget', dataRoot: pre.dataRoot, size: 32, defectTypes: [], skipped: [] },
    {
      train: { images: tr.images, masks: null, records: tr.records },
      val: { images: va.images, masks: null, records: va.records },
      test: { images: te.images, masks: te.masks, records: te.records },
    },
  );
  const preprocess = await finishStep(
    pre,
    'preprocess',
    new Date(),
    [await artifact(pre, 'manifest', join(pre.stepDir, 'manifest.json'))],
    {},
  );
  return { runDir, ctx: (config) => base('train', config, { preprocess }) };
}

/** The configuration the crash-resume child and its in-process reference both train. */
export function childConfig(): TrainingConfig {
  return tinyConfig({
    epochs: 5,
    checkpoint: { every_epochs: 1, keep_last: 2 },
    lr_schedule: { name: 'cosine' },
  });
}

/** The reproducible part of an epoch record (timings excluded). */
export function lossesOf(
  history: { loss: number; valLoss: number; terms: Record<string, number>; lr: number }[],
) {
  return history.map((h) => ({ loss: h.loss, valLoss: h.valLoss, terms: h.terms, lr: h.lr }));
}

/**
 * The end-to-end tests' dataset: 32 px, 16 good training images per category (13 train / 3 val:
 * 4 batches of 4 per epoch), both classes in test.
 */
export async function tinyE2eDataset(root: string, categories: string[]): Promise<void> {
  await synthesizeDataset(root, { size: 32, categories, trainGood: 16, testGood: 4, perDefect: 1 });
}

/** Pipeline YAML lines of the real steps after `train`, as the end-to-end tests declare them. */
export const E2E_STEPS_AFTER_TRAIN = [
  '  - { name: validate, activity: validate, needs: [train] }',
  '  - { name: checkpoint, activity: checkpoint, needs: [train, validate] }',
  '  - { name: threshold, activity: threshold, needs: [validate, checkpoint] }',
  '  - { name: report, activity: report, needs: [threshold] }',
  '  - { name: package, activity: package, needs: [checkpoint, threshold, report] }',
];

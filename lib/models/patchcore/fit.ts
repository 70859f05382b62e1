/**
 * Fitting PatchCore: patch features of every good training image (one ONNX Runtime session of the
 * feature model), then a greedy k-center coreset of them as the memory bank, then the scoring model
 * with the bank inside. No gradient step: a fit is minutes at most, so a retried attempt redoes it
 * rather than resuming (it is deterministic for a seed, so the result is the same).
 */
import { availableParallelism } from 'node:os';
import type { PatchcoreConfig } from '../../config/schema';
import type { CachedSplit } from '../../data/tensor-cache';
import { ortSessionOptions } from '../../onnx/session';
import { UserError } from '../../util/errors';
import { DETECTOR_INPUT } from '../onnx-detector';
import { kCenterCoreset } from './coreset';
import type { AppendBackbone } from './feature-graph';
import { buildFeatureModel, buildScoringModel, PATCHCORE_PATCHES } from './graphs';

export interface FitProgress {
  stage: 'features' | 'coreset' | 'scoring model';
  done: number;
  total: number;
}

export interface PatchcoreFit {
  onnx: Uint8Array;
  featureDim: number;
  grid: number;
  bankSize: number;
  trainPatches: number;
  featureSeconds: number;
  coresetSeconds: number;
}

export interface FitOptions {
  train: CachedSplit;
  cfg: PatchcoreConfig;
  backbone: AppendBackbone;
  seed: number;
  threads?: number;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: FitProgress) => void;
}

/** Patch features [count * grid^2, dim] of the split's images, and the grid they come on. */
export async function extractPatches(
  split: CachedSplit,
  graph: { bytes: Uint8Array; dim: number; grid: number },
  opts: Pick<FitOptions, 'threads' | 'batchSize' | 'signal' | 'onProgress'>,
): Promise<Float32Array> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(
    graph.bytes,
    ortSessionOptions({ threads: opts.threads ?? availableParallelism() }),
  );
  const perImage = graph.grid * graph.grid * graph.dim;
  const out = new Float32Array(split.count * perImage);
  const px = split.size * split.size * 3;
  const batch = opts.batchSize ?? 8;
  try {
    for (let start = 0; start < split.count; start += batch) {
      if (opts.signal?.aborted) throw new Error('patchcore fit cancelled');
      const b = Math.min(batch, split.count - start);
      const x = new Float32Array(b * px);
      const src = split.images.subarray(start * px, (start + b) * px);
      for (let i = 0; i < x.length; i++) x[i] = src[i] / 255;
      const res = await session.run({
        [DETECTOR_INPUT]: new ort.Tensor('float32', x, [b, split.size, split.size, 3]),
      });
      out.set(res[PATCHCORE_PATCHES].data as Float32Array, start * perImage);
      opts.onProgress?.({ stage: 'features', done: start + b, total: split.count });
    }
  } finally {
    await session.release();
  }
  return out;
}

export async function fitPatchcore(opts: FitOptions): Promise<PatchcoreFit> {
  const { train, cfg } = opts;
  if (train.count === 0)
    throw new UserError(
      'INVALID_DATASET',
      'patchcore: the training split has no images to fit the memory bank on',
    );
  const graphOpts = {
    imageSize: train.size,
    backbone: opts.backbone,
    strides: cfg.strides,
    neighbourhood: cfg.neighbourhood,
    patchStride: cfg.patch_stride ?? undefined,
  };
  const t0 = performance.now();
  const features = buildFeatureModel(graphOpts);
  const patches = await extractPatches(train, features, opts);
  const n = train.count * features.grid * features.grid;
  const t1 = performance.now();
  const size = Math.max(1, Math.min(cfg.max_bank_size, Math.round(n * cfg.coreset_ratio)));
  const picked = await kCenterCoreset(patches, n, features.dim, {
    size,
    projectionDim: cfg.projection_dim,
    seed: opts.seed,
    threads: opts.threads,
    signal: opts.signal,
    onProgress: (done, total) => opts.onProgress?.({ stage: 'coreset', done, total }),
  });
  const bank = new Float32Array(picked.length * features.dim);
  picked.forEach((row, i) => {
    bank.set(patches.subarray(row * features.dim, (row + 1) * features.dim), i * features.dim);
  });
  const t2 = performance.now();
  opts.onProgress?.({ stage: 'scoring model', done: 0, total: 1 });
  const onnx = buildScoringModel({ ...graphOpts, smoothingSigma: cfg.smoothing_sigma }, bank, picked.length);
  return {
    onnx,
    featureDim: features.dim,
    grid: features.grid,
    bankSize: picked.length,
    trainPatches: n,
    featureSeconds: (t1 - t0) / 1000,
    coresetSeconds: (t2 - t1) / 1000,
  };
}

/**
 * Which engine scores images (lib/eval/anomaly-map scoreImages): 'tfjs' (the active tfjs backend),
 * 'onnx' (reconstruction, anomaly map and score in one ONNX Runtime session per model,
 * lib/model/onnx-runner createOnnxScorer), or 'auto' (onnx, falling back to tfjs where ONNX Runtime's
 * native binary does not load). Used by serving (lib/serve/engine) and the validate step.
 * Light to import: tfjs and ONNX Runtime code are loaded on first use.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import type { PatchcoreScorer } from '../infer/patchcore-scorer';
import type { ScorableModel } from '../infer/scorable-model';
import type { OnnxScorer } from '../model/onnx-runner';
import { isPatchcoreModel } from '../models/patchcore/model';
import { UserError } from '../util/errors';
import type { scoreImages } from './anomaly-map';

export type InferenceEngine = 'auto' | 'tfjs' | 'onnx';
export const INFERENCE_ENGINES: readonly InferenceEngine[] = ['auto', 'tfjs', 'onnx'];

/** scoreImages' signature, bound to an engine. */
export type ScoreFn = typeof scoreImages;

export interface ScoringEngine {
  /** The engine in use ('auto' resolved). */
  engine: Exclude<InferenceEngine, 'auto'>;
  /** Why 'auto' fell back to tfjs, if it did. */
  fallbackReason?: string;
  /** ONNX Runtime intra-op threads ('onnx' only). */
  threads?: number;
  score: ScoreFn;
  release(): Promise<void>;
}

/** A model and the anomaly-map config it will be scored with (its ONNX session is created up front). */
export interface ScoringTarget {
  model: ScorableModel;
  /** The autoencoder's map settings; a PatchCore graph has its own baked in. */
  anomalyMap: AnomalyMapConfig;
}

/**
 * The scoring engine for `targets`. 'onnx' creates every session now, so that a model ONNX cannot run
 * fails here (and 'auto' falls back) rather than on the first request; it throws if ONNX Runtime fails.
 */
export async function createScoringEngine(
  engine: InferenceEngine,
  targets: ScoringTarget[],
  opts: { threads?: number } = {},
): Promise<ScoringEngine> {
  const { scoreImages } = await import('./anomaly-map');
  const patchcore = targets.some((t) => isPatchcoreModel(t.model));
  if (engine === 'tfjs') {
    if (patchcore)
      throw new UserError(
        'INVALID_ARGUMENT',
        'engine tfjs: PatchCore models score on ONNX Runtime only; use engine onnx or auto',
      );
    return { engine: 'tfjs', score: scoreImages, release: async () => {} };
  }
  if (engine === 'auto') {
    try {
      return await createScoringEngine('onnx', targets, opts);
    } catch (err) {
      // PatchCore has no tfjs implementation to fall back to: its error is the answer.
      if (patchcore) throw err;
      return {
        engine: 'tfjs',
        fallbackReason: (err as Error).message,
        score: scoreImages,
        release: async () => {},
      };
    }
  }
  const { createOnnxScorer } = await import('../model/onnx-runner');
  const { createPatchcoreScorer } = await import('../infer/patchcore-scorer');
  const scorers = new Map<tf.LayersModel, OnnxScorer>();
  const patchcoreScorers = new Map<ScorableModel, PatchcoreScorer>();
  const release = async () => {
    await Promise.all([...scorers.values(), ...patchcoreScorers.values()].map((s) => s.release()));
  };
  let threads = opts.threads;
  try {
    for (const t of targets) {
      if (isPatchcoreModel(t.model)) {
        if (!patchcoreScorers.has(t.model)) {
          const ps = await createPatchcoreScorer(t.model, opts);
          patchcoreScorers.set(t.model, ps);
          threads ??= ps.threads;
        }
        continue;
      }
      let s = scorers.get(t.model);
      if (!s) {
        s = await createOnnxScorer(t.model, opts);
        scorers.set(t.model, s);
      }
      await s.prepare(t.anomalyMap);
    }
  } catch (err) {
    await release();
    throw err;
  }
  const score: ScoreFn = (model, images, n, size, cfg, batchSize, scoreOpts = {}) => {
    const ps = patchcoreScorers.get(model);
    if (ps)
      return scoreImages(model, images, n, size, cfg, batchSize, { ...scoreOpts, scoreBatch: ps.score });
    const s = isPatchcoreModel(model) ? undefined : scorers.get(model);
    if (!s) throw new Error('onnx engine: no session for this model (it was not loaded at start-up)');
    return scoreImages(model, images, n, size, cfg, batchSize, { ...scoreOpts, scoreBatch: s.score });
  };
  threads = scorers.values().next().value?.threads ?? threads;
  return { engine: 'onnx', threads, score, release };
}

/**
 * Which engine scores images (lib/eval/anomaly-map scoreImages): 'tfjs' (the active tfjs backend),
 * 'onnx' (reconstruction, anomaly map and score in one ONNX Runtime session per model,
 * lib/model/onnx-runner createOnnxScorer), or 'auto' (onnx, falling back to tfjs where ONNX Runtime's
 * native binary does not load). Used by serving (lib/serve/engine) and the validate step.
 * Light to import: tfjs and ONNX Runtime code are loaded on first use.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import type { OnnxScorer } from '../model/onnx-runner';
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
  model: tf.LayersModel;
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
  if (engine === 'tfjs') return { engine: 'tfjs', score: scoreImages, release: async () => {} };
  if (engine === 'auto') {
    try {
      return await createScoringEngine('onnx', targets, opts);
    } catch (err) {
      return {
        engine: 'tfjs',
        fallbackReason: (err as Error).message,
        score: scoreImages,
        release: async () => {},
      };
    }
  }
  const { createOnnxScorer } = await import('../model/onnx-runner');
  const scorers = new Map<tf.LayersModel, OnnxScorer>();
  const release = async () => {
    await Promise.all([...scorers.values()].map((s) => s.release()));
  };
  try {
    for (const t of targets) {
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
    const s = scorers.get(model);
    if (!s) throw new Error('onnx engine: no session for this model (it was not loaded at start-up)');
    return scoreImages(model, images, n, size, cfg, batchSize, { ...scoreOpts, scoreBatch: s.score });
  };
  const threads = scorers.values().next().value?.threads ?? opts.threads;
  return { engine: 'onnx', threads, score, release };
}

/**
 * One model's decision on a batch of preprocessed images: anomaly maps via lib/eval's scoreImages (the
 * same map computation the thresholds were fitted with), then verdicts from the package calibration.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import { normaliseScore } from '../eval/calibration';
import { defectArea } from './heatmap';
import type { ServedModel } from './models';

/** The signature of lib/eval/anomaly-map's scoreImages (injectable so tests can stub the model side). */
export type Scorer = (
  model: tf.LayersModel,
  images: Float32Array,
  n: number,
  size: number,
  cfg: AnomalyMapConfig,
  batchSize?: number,
) => Promise<{ maps: Float32Array; scores: Float32Array; latencyMs: number[] }>;

export type Verdict = 'defective' | 'good';

export interface Prediction {
  /** Raw image score (same units as calibration.imageThreshold). */
  score: number;
  /** In [0,1]; 0.5 is the decision threshold (lib/eval normaliseScore). */
  normalisedScore: number;
  threshold: number;
  verdict: Verdict;
  /** Fraction of pixels at or above the pixel threshold. */
  defectArea: number;
  /** Anomaly map, size*size. */
  map: Float32Array;
}

/** Largest batch handed to scoreImages at once: bounds tensor memory for big uploads. */
export const INFERENCE_BATCH = 8;

let defaultScorer: Scorer | null = null;
/** lib/eval's scoreImages, imported on first use (keeps tfjs-heavy eval code off the import path of tests that stub it). */
export async function loadDefaultScorer(): Promise<Scorer> {
  defaultScorer ??= (await import('../eval/anomaly-map')).scoreImages;
  return defaultScorer;
}

export async function predict(
  served: ServedModel,
  tensors: Float32Array[],
  scorer: Scorer,
): Promise<{ predictions: Prediction[]; inferenceMs: number }> {
  const size = served.pkg.preprocess.imageSize;
  const cal = served.pkg.calibration;
  const pixels = size * size;
  const input = new Float32Array(tensors.length * pixels * 3);
  tensors.forEach((t, i) => {
    input.set(t, i * pixels * 3);
  });
  // The queue wraps only the tfjs part: decoding and PNG encoding run in sharp's thread pool meanwhile.
  const t0 = performance.now();
  const { maps, scores } = await served.queue.run(() =>
    scorer(served.pkg.model, input, tensors.length, size, cal.anomalyMap, INFERENCE_BATCH),
  );
  const inferenceMs = performance.now() - t0;
  const predictions = tensors.map((_, i): Prediction => {
    const score = scores[i];
    const map = maps.slice(i * pixels, (i + 1) * pixels);
    return {
      score,
      normalisedScore: normaliseScore(score, cal),
      threshold: cal.imageThreshold,
      // Same rule as normaliseScore's 0.5 point: at the threshold counts as defective.
      verdict: score >= cal.imageThreshold ? 'defective' : 'good',
      defectArea: defectArea(map, cal.pixelThreshold),
      map,
    };
  });
  return { predictions, inferenceMs };
}

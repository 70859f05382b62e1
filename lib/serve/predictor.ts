/**
 * One model's decision on a batch of preprocessed images: anomaly maps via lib/eval's scoreImages (the
 * same map computation the thresholds were fitted with), then verdicts from the package calibration.
 */
import type { AnomalyMapConfig } from '../config/schema';
import { normaliseScore } from '../eval/calibration';
import type { ScorableModel } from '../infer/scorable-model';
import { defectArea } from './heatmap';
import type { ServedModel } from './models';
import { BatchingQueue } from './queue';

/** The signature of lib/eval/anomaly-map's scoreImages (injectable so tests can stub the model side). */
export type Scorer = (
  model: ScorableModel,
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

/** Largest batch handed to scoreImages at once (bounds tensor memory), and the micro-batching limit. */
export const INFERENCE_BATCH = 8;

let defaultScorer: Scorer | null = null;
/** lib/eval's scoreImages, imported on first use (keeps tfjs-heavy eval code off the import path of tests that stub it). */
export async function loadDefaultScorer(): Promise<Scorer> {
  defaultScorer ??= (await import('../eval/anomaly-map')).scoreImages;
  return defaultScorer;
}

interface Scored {
  map: Float32Array;
  score: number;
}

/**
 * A served model with its inference queue: concurrent requests are merged into batches of up to
 * INFERENCE_BATCH images (see BatchingQueue), one batch at a time.
 */
export class ModelPredictor {
  readonly queue: BatchingQueue<Float32Array, Scored>;

  constructor(
    readonly served: ServedModel,
    scorer: Scorer,
    opts: { maxPending?: number } = {},
  ) {
    const size = served.pkg.preprocess.imageSize;
    const pixels = size * size;
    this.queue = new BatchingQueue<Float32Array, Scored>(
      async (tensors) => {
        const input = new Float32Array(tensors.length * pixels * 3);
        tensors.forEach((t, i) => {
          input.set(t, i * pixels * 3);
        });
        const { maps, scores } = await scorer(
          served.pkg.model,
          input,
          tensors.length,
          size,
          served.pkg.calibration.anomalyMap,
          INFERENCE_BATCH,
        );
        return tensors.map((_, i) => ({ map: maps.slice(i * pixels, (i + 1) * pixels), score: scores[i] }));
      },
      INFERENCE_BATCH,
      opts.maxPending,
    );
  }

  /** Scores preprocessed images (preprocess.json tensors); decisions from the package calibration. */
  async predict(tensors: Float32Array[]): Promise<{ predictions: Prediction[]; inferenceMs: number }> {
    const cal = this.served.pkg.calibration;
    // Decoding and PNG encoding stay outside the queue: they run in sharp's thread pool meanwhile.
    const t0 = performance.now();
    const scored = await this.queue.run(tensors);
    const inferenceMs = performance.now() - t0;
    const predictions = scored.map(
      ({ map, score }): Prediction => ({
        score,
        normalisedScore: normaliseScore(score, cal),
        threshold: cal.imageThreshold,
        // Same rule as normaliseScore's 0.5 point: at the threshold counts as defective.
        verdict: score >= cal.imageThreshold ? 'defective' : 'good',
        defectArea: defectArea(map, cal.pixelThreshold),
        map,
      }),
    );
    return { predictions, inferenceMs };
  }
}

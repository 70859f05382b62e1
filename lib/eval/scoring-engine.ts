/**
 * Which engine scores images (lib/eval/anomaly-map scoreImages): 'tfjs' (the active tfjs backend),
 * 'onnx' (reconstruction, anomaly map and score in one ONNX Runtime session per model,
 * lib/models/autoencoder/runner createOnnxScorer), or 'auto' (onnx, falling back to tfjs where ONNX Runtime's
 * native binary does not load). Used by serving (lib/serve/engine) and the validate step.
 * The onnx engine's sessions run on the execution provider of `device` (lib/onnx/execution-provider).
 * Light to import: tfjs and ONNX Runtime code are loaded on first use.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import type { OnnxDetectorScorer } from '../infer/onnx-detector-scorer';
import type { ScorableModel } from '../infer/scorable-model';
import type { OnnxScorer } from '../models/autoencoder/runner';
import { DETECTOR_LABEL, isOnnxDetector } from '../models/onnx-detector';
import type { DevicePreference, ExecutionProviderChoice } from '../onnx/execution-provider';
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
  /** ONNX Runtime execution provider and why it was chosen ('onnx' only; lib/onnx/execution-provider). */
  executionProvider?: ExecutionProviderChoice;
  score: ScoreFn;
  release(): Promise<void>;
}

export interface ScoringEngineOptions {
  /** ONNX Runtime intra-op threads (default: all cores). */
  threads?: number;
  /**
   * ONNX Runtime execution provider: auto (default: cuda, then webgpu, when one initialises; else cpu;
   * ANOMALY_SPOTTER_DEVICE sets the host default) | cpu | cuda | webgpu (an error when it does not initialise).
   */
  device?: DevicePreference;
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
  opts: ScoringEngineOptions = {},
): Promise<ScoringEngine> {
  const { scoreImages } = await import('./anomaly-map');
  const detector = targets.map((t) => t.model).find(isOnnxDetector);
  if (engine === 'tfjs') {
    if (detector)
      throw new UserError(
        'INVALID_ARGUMENT',
        `engine tfjs: ${DETECTOR_LABEL[detector.kind]} models score on ONNX Runtime only; use engine onnx or auto`,
      );
    return { engine: 'tfjs', score: scoreImages, release: async () => {} };
  }
  const ep = await import('../onnx/execution-provider');
  const device = opts.device ?? 'auto';
  const requested = ep.effectiveDevice(device).device;
  if (engine === 'auto') {
    // An explicit GPU device is resolved outside the fallback: if it does not initialise, that is an
    // error to report, not a reason to score on tfjs.
    const explicit =
      requested === 'cuda' || requested === 'webgpu' ? await ep.resolveExecutionProvider(device) : undefined;
    try {
      return await createOnnxScoringEngine(targets, opts, explicit);
    } catch (err) {
      // PatchCore and DRAEM have no tfjs implementation to fall back to: their error is the answer.
      if (explicit || detector) throw err;
      return {
        engine: 'tfjs',
        fallbackReason: (err as Error).message,
        score: scoreImages,
        release: async () => {},
      };
    }
  }
  return createOnnxScoringEngine(targets, opts);
}

async function createOnnxScoringEngine(
  targets: ScoringTarget[],
  opts: ScoringEngineOptions,
  resolved?: ExecutionProviderChoice,
): Promise<ScoringEngine> {
  const { scoreImages } = await import('./anomaly-map');
  const { resolveExecutionProvider } = await import('../onnx/execution-provider');
  let executionProvider = resolved ?? (await resolveExecutionProvider(opts.device ?? 'auto'));
  const { createOnnxScorer } = await import('../models/autoencoder/runner');
  const { createOnnxDetectorScorer } = await import('../infer/onnx-detector-scorer');
  const scorers = new Map<tf.LayersModel, OnnxScorer>();
  const detectorScorers = new Map<ScorableModel, OnnxDetectorScorer>();
  const release = async () => {
    await Promise.all([...scorers.values(), ...detectorScorers.values()].map((s) => s.release()));
  };
  const prepareAll = async () => {
    for (const t of targets) {
      if (isOnnxDetector(t.model)) {
        if (!detectorScorers.has(t.model))
          detectorScorers.set(
            t.model,
            await createOnnxDetectorScorer(t.model, { threads: opts.threads, executionProvider }),
          );
        continue;
      }
      let s = scorers.get(t.model);
      if (!s) {
        s = await createOnnxScorer(t.model, { threads: opts.threads, executionProvider });
        scorers.set(t.model, s);
      }
      await s.prepare(t.anomalyMap);
    }
  };
  try {
    await prepareAll();
  } catch (err) {
    await release();
    scorers.clear();
    detectorScorers.clear();
    // The probe passed but a real graph failed on the GPU provider: `auto` goes on on CPU.
    if (executionProvider.requested !== 'auto' || executionProvider.provider === 'cpu') throw err;
    const why = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    executionProvider = {
      ...executionProvider,
      provider: 'cpu',
      deviceId: undefined,
      fallbackReason: `auto: ${executionProvider.provider} initialised, but the scoring sessions failed on it (${why})`,
    };
    try {
      await prepareAll();
    } catch (err2) {
      await release();
      throw err2;
    }
  }
  const score: ScoreFn = (model, images, n, size, cfg, batchSize, scoreOpts = {}) => {
    const ps = detectorScorers.get(model);
    if (ps)
      return scoreImages(model, images, n, size, cfg, batchSize, { ...scoreOpts, scoreBatch: ps.score });
    const s = isOnnxDetector(model) ? undefined : scorers.get(model);
    if (!s) throw new Error('onnx engine: no session for this model (it was not loaded at start-up)');
    return scoreImages(model, images, n, size, cfg, batchSize, { ...scoreOpts, scoreBatch: s.score });
  };
  const threads =
    scorers.values().next().value?.threads ?? detectorScorers.values().next().value?.threads ?? opts.threads;
  return { engine: 'onnx', threads, executionProvider, score, release };
}

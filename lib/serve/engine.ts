/**
 * Inference engine for serving: 'tfjs' (lib/eval's scoreImages on the active tfjs backend), 'onnx'
 * (reconstruction, anomaly map and score in one ONNX Runtime session per model), or 'auto' (onnx,
 * falling back to tfjs with a warning where ONNX Runtime's native binary does not load). The engine
 * itself is lib/eval/scoring-engine, shared with the validate step.
 */
import {
  createScoringEngine,
  INFERENCE_ENGINES,
  type InferenceEngine,
  type ScoringEngineOptions,
} from '../eval/scoring-engine';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import type { ServedModel } from './models';
import type { Scorer } from './predictor';

export { INFERENCE_ENGINES, type InferenceEngine };

export interface EngineScorer {
  /** The engine in use ('auto' resolved). */
  engine: Exclude<InferenceEngine, 'auto'>;
  /** Why 'auto' fell back to tfjs, if it did. */
  fallbackReason?: string;
  /** ONNX Runtime execution provider and why ('onnx' only). */
  executionProvider?: ExecutionProviderChoice;
  /** ONNX Runtime intra-op threads ('onnx' only). */
  threads?: number;
  /** undefined: keep the default scorer. */
  scorer?: Scorer;
  release(): Promise<void>;
}

/** Builds the scorer for `engine`; for 'onnx', one ONNX Runtime session per served model. */
export async function createEngineScorer(
  engine: InferenceEngine,
  models: ServedModel[],
  opts: ScoringEngineOptions = {},
): Promise<EngineScorer> {
  if (engine === 'tfjs') return { engine: 'tfjs', release: async () => {} };
  const e = await createScoringEngine(
    engine,
    models.map((m) => ({ model: m.pkg.model, anomalyMap: m.pkg.calibration.anomalyMap })),
    opts,
  );
  return {
    engine: e.engine,
    fallbackReason: e.fallbackReason,
    executionProvider: e.executionProvider,
    threads: e.threads,
    scorer: e.engine === 'onnx' ? e.score : undefined,
    release: e.release,
  };
}

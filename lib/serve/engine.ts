/**
 * Inference engine for serving: 'tfjs' (lib/eval's scoreImages on the active tfjs backend), 'onnx' (the
 * same scoreImages, with each model's forward pass on ONNX Runtime, lib/model/onnx-runner), or 'auto'
 * (onnx, falling back to tfjs with a warning where ONNX Runtime's native binary does not load).
 */
import type * as tf from '@tensorflow/tfjs';
import type { OnnxReconstructor } from '../model/onnx-runner';
import type { ServedModel } from './models';
import type { Scorer } from './predictor';

export type InferenceEngine = 'auto' | 'tfjs' | 'onnx';
export const INFERENCE_ENGINES: readonly InferenceEngine[] = ['auto', 'tfjs', 'onnx'];

export interface EngineScorer {
  /** The engine in use ('auto' resolved). */
  engine: Exclude<InferenceEngine, 'auto'>;
  /** Why 'auto' fell back to tfjs, if it did. */
  fallbackReason?: string;
  /** undefined: keep the default scorer. */
  scorer?: Scorer;
  release(): Promise<void>;
}

/** Builds the scorer for `engine`; for 'onnx', one ONNX Runtime session per served model. */
export async function createEngineScorer(
  engine: InferenceEngine,
  models: ServedModel[],
  opts: { threads?: number } = {},
): Promise<EngineScorer> {
  if (engine === 'tfjs') return { engine: 'tfjs', release: async () => {} };
  if (engine === 'auto') {
    try {
      return await createEngineScorer('onnx', models, opts);
    } catch (err) {
      return { engine: 'tfjs', fallbackReason: (err as Error).message, release: async () => {} };
    }
  }
  const [{ createOnnxReconstructor }, { scoreImages }] = await Promise.all([
    import('../model/onnx-runner'),
    import('../eval/anomaly-map'),
  ]);
  const sessions = new Map<tf.LayersModel, OnnxReconstructor>();
  for (const m of models) sessions.set(m.pkg.model, await createOnnxReconstructor(m.pkg.model, opts));
  const scorer: Scorer = (model, images, n, size, cfg, batchSize) => {
    const session = sessions.get(model);
    if (!session) throw new Error('onnx engine: no session for this model (it was not loaded at start-up)');
    return scoreImages(model, images, n, size, cfg, batchSize, { reconstruct: session.reconstruct });
  };
  return {
    engine: 'onnx',
    scorer,
    release: async () => {
      await Promise.all([...sessions.values()].map((s) => s.release()));
    },
  };
}

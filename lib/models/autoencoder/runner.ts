import { availableParallelism } from 'node:os';
import type * as tf from '@tensorflow/tfjs';
import type { InferenceSession } from 'onnxruntime-node';
import type { AnomalyMapConfig } from '../../config/schema';
import type { ExecutionProviderChoice } from '../../onnx/execution-provider';
import { ortSessionOptions } from '../../onnx/session';
import { exportOnnxScorer, ONNX_MAP_OUTPUT, ONNX_SCORE_OUTPUT } from './anomaly-map-graph';
import { exportOnnxModel, ONNX_INPUT, ONNX_OUTPUT } from './export';

/**
 * Reconstruction (the autoencoder's forward pass) on ONNX Runtime's CPU engine instead of tfjs:
 * multi-threaded native kernels where the tfjs wasm backend is single-threaded in Node.
 * onnxruntime-node is imported lazily so that the default tfjs path never loads it.
 */
export interface OnnxReconstructor {
  /** `n` NHWC float32 images of size x size x 3 in, their reconstructions (same layout) out. */
  reconstruct(images: Float32Array, n: number, size: number): Promise<Float32Array>;
  /** Frees the native session. */
  release(): Promise<void>;
  threads: number;
}

export interface OnnxReconstructorOptions {
  /** Intra-op threads; default: all cores. */
  threads?: number;
  /** Execution provider of the sessions (lib/onnx/execution-provider); default CPU. */
  executionProvider?: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'>;
}

export async function createOnnxReconstructor(
  model: tf.LayersModel,
  opts: OnnxReconstructorOptions = {},
): Promise<OnnxReconstructor> {
  const ort = await import('onnxruntime-node');
  const threads = opts.threads ?? availableParallelism();
  const session = await ort.InferenceSession.create(
    exportOnnxModel(model),
    ortSessionOptions({ threads, executionProvider: opts.executionProvider }),
  );
  return {
    threads,
    async reconstruct(images, n, size) {
      const out = await session.run({
        [ONNX_INPUT]: inputTensor(ort, model, images, n, size, 'reconstruct'),
      });
      return float32(out[ONNX_OUTPUT], 'reconstruct');
    },
    release: () => session.release(),
  };
}

type Ort = typeof import('onnxruntime-node');

/** The model's NHWC input tensor for `n` images, after checking their size against the model's. */
function inputTensor(
  ort: Ort,
  model: tf.LayersModel,
  images: Float32Array,
  n: number,
  size: number,
  what: string,
) {
  const [, h, w, channels] = model.inputs[0].shape;
  const c = channels ?? 3;
  if (size !== h || size !== w)
    throw new Error(`onnx ${what}: images are ${size}x${size}, the model takes ${h}x${w}`);
  if (images.length !== n * size * size * c)
    throw new Error(`onnx ${what}: ${images.length} values is not ${n} images of ${size}x${size}x${c}`);
  return new ort.Tensor('float32', images, [n, size, size, c]);
}

function float32(t: { data: unknown }, what: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`onnx ${what}: output is not float32`);
  return t.data;
}

/**
 * Reconstruction, anomaly map and image score in one ONNX Runtime session (lib/models/autoencoder/anomaly-map-graph):
 * the whole of lib/eval scoreImages' per-batch work on native kernels. The map settings are baked into
 * the graph, so there is one session per anomaly-map config (in practice one: the calibration's).
 */
export interface OnnxScorer {
  /** Maps (n*size*size) and scores (n) of `n` NHWC float32 images of size x size x 3. */
  score(
    images: Float32Array,
    n: number,
    size: number,
    cfg: AnomalyMapConfig,
  ): Promise<{ maps: Float32Array; scores: Float32Array }>;
  /** Creates the session for `cfg` now, so that a failure shows at start-up rather than on first use. */
  prepare(cfg: AnomalyMapConfig): Promise<void>;
  /** Frees the native sessions. */
  release(): Promise<void>;
  threads: number;
}

export async function createOnnxScorer(
  model: tf.LayersModel,
  opts: OnnxReconstructorOptions = {},
): Promise<OnnxScorer> {
  const ort = await import('onnxruntime-node');
  const threads = opts.threads ?? availableParallelism();
  // Promises, so that concurrent first calls with one config share one session.
  const sessions = new Map<string, Promise<InferenceSession>>();
  const session = (cfg: AnomalyMapConfig) => {
    // Every setting is baked into the graph, so every one is part of the key.
    const key = JSON.stringify(Object.entries(cfg).sort(([a], [b]) => (a < b ? -1 : 1)));
    let s = sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(
        exportOnnxScorer(model, cfg),
        ortSessionOptions({ threads, executionProvider: opts.executionProvider }),
      );
      sessions.set(key, s);
      // A failed creation is not cached: the next call tries again and reports its own error.
      s.catch(() => sessions.delete(key));
    }
    return s;
  };
  return {
    threads,
    async score(images, n, size, cfg) {
      const input = inputTensor(ort, model, images, n, size, 'score');
      const out = await (await session(cfg)).run({ [ONNX_INPUT]: input });
      return {
        maps: float32(out[ONNX_MAP_OUTPUT], 'score'),
        scores: float32(out[ONNX_SCORE_OUTPUT], 'score'),
      };
    },
    async prepare(cfg) {
      await session(cfg);
    },
    async release() {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all(all.map(async (s) => (await s.catch(() => null))?.release()));
    },
  };
}

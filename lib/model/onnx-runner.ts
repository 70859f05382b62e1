import { availableParallelism } from 'node:os';
import type * as tf from '@tensorflow/tfjs';
import { exportOnnxModel, ONNX_INPUT, ONNX_OUTPUT } from './onnx-export';

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
}

export async function createOnnxReconstructor(
  model: tf.LayersModel,
  opts: OnnxReconstructorOptions = {},
): Promise<OnnxReconstructor> {
  const ort = await import('onnxruntime-node');
  const threads = opts.threads ?? availableParallelism();
  const session = await ort.InferenceSession.create(exportOnnxModel(model), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const [, h, w, c] = model.inputs[0].shape;
  return {
    threads,
    async reconstruct(images, n, size) {
      if (size !== h || size !== w)
        throw new Error(`onnx reconstruct: images are ${size}x${size}, the model takes ${h}x${w}`);
      if (images.length !== n * size * size * (c ?? 3))
        throw new Error(
          `onnx reconstruct: ${images.length} values is not ${n} images of ${size}x${size}x${c}`,
        );
      const input = new ort.Tensor('float32', images, [n, size, size, c ?? 3]);
      const out = await session.run({ [ONNX_INPUT]: input });
      const data = out[ONNX_OUTPUT].data;
      if (!(data instanceof Float32Array)) throw new Error('onnx reconstruct: output is not float32');
      return data;
    },
    release: () => session.release(),
  };
}

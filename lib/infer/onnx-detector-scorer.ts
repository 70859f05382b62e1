/**
 * The model kinds whose whole scorer is one ONNX graph (PatchCore, DRAEM: lib/models/onnx-detector) on
 * ONNX Runtime: image -> map, score in one session. Images run one at a time: PatchCore's distance
 * matrix of one image (patches x bank) is tens of MB, of a batch of eight hundreds, for no gain in
 * throughput (its MatMul, and DRAEM's convolutions, already use every thread).
 */
import { availableParallelism } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import {
  DETECTOR_INPUT,
  DETECTOR_LABEL,
  DETECTOR_MAP,
  DETECTOR_SCORE,
  type OnnxDetector,
} from '../models/onnx-detector';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import { ortSessionOptions } from '../onnx/session';

export interface OnnxDetectorScorer {
  score(images: Float32Array, n: number, size: number): Promise<{ maps: Float32Array; scores: Float32Array }>;
  release(): Promise<void>;
  threads: number;
}

export async function createOnnxDetectorScorer(
  model: OnnxDetector,
  opts: { threads?: number; executionProvider?: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'> } = {},
): Promise<OnnxDetectorScorer> {
  const ort = await import('onnxruntime-node');
  const threads = opts.threads ?? availableParallelism();
  const session: InferenceSession = await ort.InferenceSession.create(
    model.onnx,
    ortSessionOptions({ threads, executionProvider: opts.executionProvider }),
  );
  const s = model.imageSize;
  const label = DETECTOR_LABEL[model.kind];
  return {
    threads,
    async score(images, n, size) {
      if (size !== s) throw new Error(`${label}: images are ${size}x${size}, the model takes ${s}x${s}`);
      const px = s * s;
      if (images.length !== n * px * 3)
        throw new Error(`${label}: ${images.length} values is not ${n} images of ${s}x${s}x3`);
      const maps = new Float32Array(n * px);
      const scores = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const out = await session.run({
          [DETECTOR_INPUT]: new ort.Tensor('float32', images.slice(i * px * 3, (i + 1) * px * 3), [
            1,
            s,
            s,
            3,
          ]),
        });
        maps.set(out[DETECTOR_MAP].data as Float32Array, i * px);
        scores[i] = (out[DETECTOR_SCORE].data as Float32Array)[0];
      }
      return { maps, scores };
    },
    release: () => session.release(),
  };
}

/**
 * PatchCore on ONNX Runtime: its scoring graph (image -> map, score) in one session. Images run one
 * at a time: the distance matrix of one image (patches x bank) is tens of MB, of a batch of eight
 * hundreds, for no gain in throughput (the MatMul is already large enough to use every thread).
 */
import { availableParallelism } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import { PATCHCORE_INPUT, PATCHCORE_MAP, PATCHCORE_SCORE } from '../models/patchcore/graphs';
import type { PatchcoreModel } from '../models/patchcore/model';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import { ortSessionOptions } from '../onnx/session';

export interface PatchcoreScorer {
  score(images: Float32Array, n: number, size: number): Promise<{ maps: Float32Array; scores: Float32Array }>;
  release(): Promise<void>;
  threads: number;
}

export async function createPatchcoreScorer(
  model: PatchcoreModel,
  opts: { threads?: number; executionProvider?: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'> } = {},
): Promise<PatchcoreScorer> {
  const ort = await import('onnxruntime-node');
  const threads = opts.threads ?? availableParallelism();
  const session: InferenceSession = await ort.InferenceSession.create(
    model.onnx,
    ortSessionOptions({ threads, executionProvider: opts.executionProvider }),
  );
  const s = model.imageSize;
  return {
    threads,
    async score(images, n, size) {
      if (size !== s) throw new Error(`patchcore: images are ${size}x${size}, the model takes ${s}x${s}`);
      const px = s * s;
      if (images.length !== n * px * 3)
        throw new Error(`patchcore: ${images.length} values is not ${n} images of ${s}x${s}x3`);
      const maps = new Float32Array(n * px);
      const scores = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const out = await session.run({
          [PATCHCORE_INPUT]: new ort.Tensor('float32', images.slice(i * px * 3, (i + 1) * px * 3), [
            1,
            s,
            s,
            3,
          ]),
        });
        maps.set(out[PATCHCORE_MAP].data as Float32Array, i * px);
        scores[i] = (out[PATCHCORE_SCORE].data as Float32Array)[0];
      }
      return { maps, scores };
    },
    release: () => session.release(),
  };
}

/**
 * Training engines: what runs one optimisation step. `training.engine`:
 *   onnx  forward + backward on ONNX Runtime's native CPU kernels (multi-threaded, AVX2/FMA), the
 *         loss and its gradient too (on tfjs only for a perceptual model); ~3x the tfjs-wasm step rate
 *         on the same core (docs/BENCHMARKS.md).
 *   tfjs  everything on the selected tfjs backend (tfjs-node, WebGPU, or wasm with our kernels).
 *   auto  tfjs when an accelerated tfjs backend (tensorflow, webgpu) is active, else onnx when
 *         onnxruntime-node loads, else tfjs.
 * Both engines train the same model with the same Adam and share one checkpoint format.
 */
import { availableParallelism } from 'node:os';
import type * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from '../config/schema';
import type { LossFunction } from '../model/losses';
import { UserError } from '../util/errors';
import type { TrainEngine } from './engine-types';

export type { StepOutput, TrainEngine } from './engine-types';

/** Set by `npm run worker` for each training process: cores / training processes. */
export const TRAIN_THREADS_ENV = 'ANOMALY_SPOTTER_TRAIN_THREADS';

/** training.threads, else the worker's share of the cores, else all cores. */
export function trainThreads(cfg: TrainingConfig): number {
  if (cfg.threads !== null) return cfg.threads;
  const fromEnv = Number(process.env[TRAIN_THREADS_ENV]);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return availableParallelism();
}

export interface EngineSelection {
  engine: TrainEngine;
  /** Why this engine (and not the other one). */
  reason: string;
}

export async function createTrainEngine(args: {
  model: tf.LayersModel;
  optimizer: tf.Optimizer;
  loss: LossFunction;
  config: TrainingConfig;
  /** The active tfjs backend (lib/model/backend). */
  backend: string;
}): Promise<EngineSelection> {
  const { model, optimizer, loss, config: cfg, backend } = args;
  const { TfjsTrainEngine } = await import('./tfjs-train-engine');
  const tfjsEngine = (reason: string): EngineSelection => ({
    engine: new TfjsTrainEngine(model, optimizer, loss, cfg, `tfjs ${backend} backend`),
    reason,
  });
  if (cfg.engine === 'tfjs') return tfjsEngine('training.engine: tfjs');
  if (cfg.engine === 'auto' && (backend === 'tensorflow' || backend === 'webgpu'))
    return tfjsEngine(`training.engine: auto and the accelerated tfjs backend '${backend}' is active`);
  const threads = trainThreads(cfg);
  try {
    const { OnnxTrainEngine } = await import('./onnx-train-engine');
    const engine = await OnnxTrainEngine.create(model, optimizer, loss, cfg, { threads });
    return {
      engine,
      reason: `training.engine: ${cfg.engine}${cfg.engine === 'auto' ? ` (tfjs backend '${backend}' is not accelerated; ONNX Runtime is)` : ''}`,
    };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (cfg.engine === 'onnx')
      throw new UserError(
        'INVALID_CONFIG',
        `training.engine: onnx, but ONNX Runtime could not start: ${why}. Reinstall with 'npm ci' or set training.engine: tfjs`,
      );
    return tfjsEngine(`training.engine: auto, ONNX Runtime unavailable (${why})`);
  }
}

/**
 * Training engines: what runs one optimisation step. `training.engine`:
 *   onnx  forward + backward on ONNX Runtime's native CPU kernels (multi-threaded, AVX2/FMA), the
 *         loss and its gradient too (on tfjs only for a perceptual model); ~3x the tfjs-wasm step rate
 *         on the same core (docs/BENCHMARKS.md).
 *   tfjs  everything on the selected tfjs backend (tfjs-node, WebGPU, or wasm with our kernels).
 *   auto  tfjs when an accelerated tfjs backend (tensorflow, webgpu) is active, else onnx when
 *         onnxruntime-node loads, else tfjs.
 * Both engines train the same model with the same Adam and share one checkpoint format.
 * The onnx engine's sessions run on the execution provider of `training.device` (auto | cpu | cuda |
 * webgpu; lib/onnx/execution-provider): an explicit GPU device that does not initialise is an error,
 * `auto` falls back to CPU and records why.
 */
import { availableParallelism } from 'node:os';
import type * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from '../config/schema';
import type { LossFunction } from '../models/autoencoder/losses';
import { UserError } from '../util/errors';
import type { TrainEngine } from './engine-types';

export type { StepOutput, TrainEngine, TrainEngineRuntime } from './engine-types';

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
  const { effectiveDevice, resolveExecutionProvider } = await import('../onnx/execution-provider');
  const device = effectiveDevice(cfg.device);
  const gpuAsked = device.device === 'cuda' || device.device === 'webgpu';
  if (cfg.engine === 'tfjs')
    return tfjsEngine(
      `training.engine: tfjs${gpuAsked ? ` (training.device: ${device.device} applies to ONNX Runtime only)` : ''}`,
    );
  if (cfg.engine === 'auto' && !gpuAsked && (backend === 'tensorflow' || backend === 'webgpu'))
    return tfjsEngine(`training.engine: auto and the accelerated tfjs backend '${backend}' is active`);
  const threads = trainThreads(cfg);
  // An explicit GPU device that does not initialise is the user's to fix: it throws here, before
  // the engine fallback below could hide it behind a tfjs run.
  let executionProvider = gpuAsked ? await resolveExecutionProvider(cfg.device) : undefined;
  try {
    executionProvider ??= await resolveExecutionProvider(cfg.device);
    const { OnnxTrainEngine } = await import('./onnx-train-engine');
    let engine: TrainEngine;
    try {
      engine = await OnnxTrainEngine.create(model, optimizer, loss, cfg, { threads, executionProvider });
    } catch (err) {
      // The probe passed but the real graphs failed on the GPU provider: `auto` goes on on CPU.
      if (device.device !== 'auto' || executionProvider.provider === 'cpu') throw err;
      const why = err instanceof Error ? err.message : String(err);
      executionProvider = {
        ...executionProvider,
        provider: 'cpu',
        deviceId: undefined,
        fallbackReason: `auto: ${executionProvider.provider} initialised, but the training sessions failed on it (${why.split('\n')[0]})`,
      };
      engine = await OnnxTrainEngine.create(model, optimizer, loss, cfg, { threads, executionProvider });
    }
    const ep = executionProvider;
    const epReason = `training.device: ${ep.requested}${ep.source === 'env' ? ' (ANOMALY_SPOTTER_DEVICE)' : ''} -> ${ep.provider}${ep.fallbackReason ? ` (${ep.fallbackReason})` : ''}`;
    return {
      engine,
      reason: `training.engine: ${cfg.engine}${cfg.engine === 'auto' ? ` (tfjs backend '${backend}' is not accelerated; ONNX Runtime is)` : ''}; ${epReason}`,
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

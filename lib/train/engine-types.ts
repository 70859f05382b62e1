/**
 * What a training engine is (lib/train/engine picks one; onnx-train-engine and tfjs-train-engine are
 * the two). Apart from the factory so that the engines and the factory do not import each other.
 */
import type { LossTerm } from '../models/autoencoder/losses';

export interface StepOutput {
  loss: number;
  terms: Partial<Record<LossTerm, number>>;
}

/** What actually ran a training engine's steps: recorded in metadata.json (engineInfo) and shown in reports. */
export interface TrainEngineRuntime {
  /** "onnxruntime-node 1.30.0", "tfjs 4.22.0 wasm". */
  runtime: string;
  /** ONNX Runtime execution provider (onnx engine only). */
  executionProvider?: 'cpu' | 'cuda' | 'webgpu';
  /** CPU threads of the engine (ONNX Runtime intra-op threads). */
  threads?: number;
  /** training.device as asked (after ANOMALY_SPOTTER_DEVICE). */
  deviceRequested?: string;
  cudaDeviceId?: number;
  /** Host GPU index of this worker process (worker --gpus). */
  gpu?: string;
  /** Why `device: auto` did not end on a GPU provider. */
  deviceFallback?: string;
}

export interface TrainEngine {
  readonly name: 'onnx' | 'tfjs';
  /** One line for logs and run metadata. */
  readonly description: string;
  /** What runs the steps (absent: the tfjs backend named in the description). */
  readonly runtime?: TrainEngineRuntime;
  /**
   * One optimisation step on `n` NHWC images in [0, 1] at learning rate `lr`: the network sees
   * `images` and the loss compares its output with `targets` (default: the images themselves;
   * clean images when `images` carry synthetic defects).
   */
  step(images: Float32Array, n: number, lr: number, targets?: Float32Array): Promise<StepOutput>;
  /** The configured loss of the current weights on `n` NHWC images (validation; no update). */
  evaluate(images: Float32Array, n: number): Promise<number>;
  /** Makes the tfjs model and optimizer current (before validation, checkpoints, image logs). */
  syncToModel(): Promise<void>;
  /** Takes weights and optimizer state from the tfjs model and optimizer (after a resume). */
  syncFromModel(): Promise<void>;
  /** Changes the compute threads between steps (engines with a thread count; lib/train/thread-budget). */
  setThreads?(threads: number): Promise<void>;
  release(): Promise<void>;
}

/** ONNX Runtime session options shared by every session we create (training, scoring, serving). */
import type { InferenceSession } from 'onnxruntime-node';
import { type ExecutionProviderChoice, executionProviders } from './execution-provider';

export interface OrtSessionOptions {
  /** Intra-op threads. */
  threads: number;
  /** Keep ONNX Runtime's CPU memory arena (fastest); off: large buffers go back to the OS after each run. */
  arena?: boolean;
  /**
   * The execution provider (lib/onnx/execution-provider resolveExecutionProvider); default CPU.
   * A GPU provider comes first, with CPU behind it for any node the provider does not implement.
   */
  executionProvider?: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'>;
}

export function ortSessionOptions(o: OrtSessionOptions): InferenceSession.SessionOptions {
  return {
    executionProviders: executionProviders(o.executionProvider),
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: o.arena ?? true,
    // Idle pool threads sleep instead of spinning: our hosts are shared (training processes, the CPU
    // worker's scoring, other jobs). Measured at 2 threads, batch 8: ~20 % less CPU, 2-4 % more wall time.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

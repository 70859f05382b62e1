/**
 * The training worker processes of one host (`npm run worker -- [--gpus 0,1] [--train-slots N]`):
 * with --gpus, N processes per GPU, each pinned to its GPU (CUDA_VISIBLE_DEVICES=<index>, so the
 * CUDA execution provider's deviceId is 0 inside the child; ANOMALY_SPOTTER_GPU=<index> names it in
 * logs, heartbeats and metadata); without, N CPU processes. Either way the cores are shared between
 * all training processes (ANOMALY_SPOTTER_TRAIN_THREADS: ONNX Runtime's intra-op threads).
 *
 * WebGPU: ONNX Runtime's Node binding exposes no adapter index; Dawn takes the first (high-performance)
 * Vulkan adapter, which CUDA_VISIBLE_DEVICES does not filter: WebGPU children are not pinned by --gpus
 * (docs/CONFIG.md); use device: cuda on multi-GPU hosts.
 */
import { GPU_INDEX_ENV } from '../lib/onnx/execution-provider';
import { TRAIN_THREADS_ENV } from '../lib/train/engine';

export interface TrainSlot {
  label: string;
  env: NodeJS.ProcessEnv;
}

export function trainWorkerSlots(opts: { gpus?: number[]; trainSlots: number; cores: number }): TrainSlot[] {
  // 0: no training processes on this host (a CPU-queue worker only).
  const perDevice = Math.max(0, Math.floor(opts.trainSlots));
  if (perDevice === 0) return [];
  const devices: Array<number | null> = opts.gpus?.length ? opts.gpus : [null];
  const total = devices.length * perDevice;
  const threads = String(Math.max(1, Math.floor(opts.cores / total)));
  const slots: TrainSlot[] = [];
  for (const gpu of devices) {
    for (let i = 0; i < perDevice; i++) {
      if (gpu === null) {
        slots.push({ label: `train${i}`, env: { [TRAIN_THREADS_ENV]: threads } });
      } else {
        slots.push({
          label: perDevice > 1 ? `gpu${gpu}.${i}` : `gpu${gpu}`,
          env: {
            CUDA_VISIBLE_DEVICES: String(gpu),
            [GPU_INDEX_ENV]: String(gpu),
            [TRAIN_THREADS_ENV]: threads,
          },
        });
      }
    }
  }
  return slots;
}

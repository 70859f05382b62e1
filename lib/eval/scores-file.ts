import { readFile } from 'node:fs/promises';
import type { AnomalyMapConfig } from '../config/schema';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import { UserError } from '../util/errors';

/** scores.json of the validate step: one record per scored image, plus how the scores were made. */
export interface ScoreRecord {
  id: string;
  /** Image path relative to the dataset root. */
  source: string;
  split: 'val' | 'test';
  defectType: string;
  label: 0 | 1;
  score: number;
}

export interface LatencyStats {
  /** The active tfjs backend (it scores when `engine` is 'tfjs'). */
  backend: string;
  /** What scored (lib/eval/scoring-engine); absent in files written before there was a choice: tfjs. */
  engine?: 'tfjs' | 'onnx';
  /** ONNX Runtime intra-op threads, when `engine` is 'onnx'. */
  engineThreads?: number;
  /** Why ONNX Runtime was not used although the step asked for 'auto'. */
  engineFallback?: string;
  /** ONNX Runtime execution provider, when `engine` is 'onnx' (absent in older files: cpu). */
  executionProvider?: 'cpu' | 'cuda' | 'webgpu';
  /** Host GPU index / CUDA device id of the provider, when it is a GPU one. */
  gpu?: string;
  cudaDeviceId?: number;
  /** Why `device: auto` did not end on a GPU provider. */
  deviceFallback?: string;
  batchSize: number;
  images: number;
  /** Per image: each batch's wall time (inference + anomaly map + download) divided by its size. */
  meanMsPerImage: number;
  p95MsPerImage: number;
}

export interface ScoresFile {
  version: 1;
  category: string;
  imageSize: number;
  anomalyMap: AnomalyMapConfig;
  val: ScoreRecord[];
  test: ScoreRecord[];
  latency: LatencyStats;
}

export async function readScoresFile(path: string): Promise<ScoresFile> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as ScoresFile;
    if (parsed.version !== 1 || !Array.isArray(parsed.val) || !Array.isArray(parsed.test))
      throw new Error('unexpected content');
    return parsed;
  } catch (err) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `${path}: not a scores file of the validate step (${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
}

const EP_LABEL = { cpu: 'CPU', cuda: 'CUDA', webgpu: 'WebGPU' } as const;

/**
 * What produced the latencies, for reports: "onnx (ONNX Runtime CPU, 2 threads)",
 * "onnx (ONNX Runtime CUDA device 0, host GPU 1, 2 CPU threads)" or "tfjs wasm".
 */
export function inferenceEngineLabel(l: LatencyStats): string {
  if (l.engine === 'onnx') {
    const ep = l.executionProvider ?? 'cpu';
    const parts = [`ONNX Runtime ${EP_LABEL[ep]}${ep === 'cuda' ? ` device ${l.cudaDeviceId ?? 0}` : ''}`];
    if (ep !== 'cpu' && l.gpu !== undefined) parts.push(`host GPU ${l.gpu}`);
    if (l.engineThreads) parts.push(`${l.engineThreads} ${ep === 'cpu' ? '' : 'CPU '}threads`);
    return `onnx (${parts.join(', ')})`;
  }
  return `tfjs ${l.backend}${l.engineFallback ? ` (ONNX Runtime not used: ${l.engineFallback})` : ''}`;
}

/** Mean and 95th percentile (nearest-rank) of per-image latencies. */
export function latencyStats(
  latencyMs: number[],
  backend: string,
  batchSize: number,
  engine?: Pick<
    LatencyStats,
    | 'engine'
    | 'engineThreads'
    | 'engineFallback'
    | 'executionProvider'
    | 'gpu'
    | 'cudaDeviceId'
    | 'deviceFallback'
  >,
): LatencyStats {
  const sorted = [...latencyMs].sort((a, b) => a - b);
  const n = sorted.length;
  return {
    backend,
    ...engine,
    batchSize,
    images: n,
    meanMsPerImage: n ? sorted.reduce((a, b) => a + b, 0) / n : 0,
    p95MsPerImage: n ? sorted[Math.max(0, Math.ceil(0.95 * n) - 1)] : 0,
  };
}

/** The execution-provider fields of LatencyStats for a scoring engine's provider (none for tfjs). */
export function latencyProviderFields(
  ep: ExecutionProviderChoice | undefined,
): Pick<LatencyStats, 'executionProvider' | 'gpu' | 'cudaDeviceId' | 'deviceFallback'> {
  if (!ep) return {};
  return {
    executionProvider: ep.provider,
    ...(ep.gpu !== undefined ? { gpu: ep.gpu } : {}),
    ...(ep.deviceId !== undefined ? { cudaDeviceId: ep.deviceId } : {}),
    ...(ep.fallbackReason ? { deviceFallback: ep.fallbackReason } : {}),
  };
}

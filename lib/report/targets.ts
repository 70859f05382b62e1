import type { MetricValue } from '../eval/metric-value';

/**
 * The original system's targets, checked per category and in the cross-category summary.
 * `met` is null when the quantity was not measured or is undefined (never silently true/false).
 */
export interface TargetCheck {
  name: string;
  target: string;
  value: number | null;
  unit: string;
  met: boolean | null;
  note?: string;
}

export const TARGETS = { imageAuroc: 0.95, f1: 0.9, latencyMs: 100, trainingMemoryMb: 2048 } as const;

export function targetChecks(q: {
  imageAuroc: MetricValue;
  f1: MetricValue;
  meanLatencyMs: number | null;
  peakRssMb: number | null;
}): TargetCheck[] {
  const check = (
    name: string,
    target: string,
    m: MetricValue | number | null,
    unit: string,
    ok: (v: number) => boolean,
    missing: string,
  ): TargetCheck => {
    const value = m === null ? null : typeof m === 'number' ? m : m.value;
    const reason =
      m !== null && typeof m === 'object' && m.value === null ? `undefined: ${m.reason}` : missing;
    return value === null
      ? { name, target, value: null, unit, met: null, note: reason }
      : { name, target, value, unit, met: ok(value) };
  };
  return [
    check(
      'image AUROC',
      `> ${TARGETS.imageAuroc}`,
      q.imageAuroc,
      '',
      (v) => v > TARGETS.imageAuroc,
      'not measured',
    ),
    check('F1 at the selected threshold', `> ${TARGETS.f1}`, q.f1, '', (v) => v > TARGETS.f1, 'not measured'),
    check(
      'inference latency (mean per image)',
      `< ${TARGETS.latencyMs} ms`,
      q.meanLatencyMs,
      'ms',
      (v) => v < TARGETS.latencyMs,
      'not measured',
    ),
    check(
      'training peak memory (RSS)',
      '< 2 GB',
      q.peakRssMb,
      'MB',
      (v) => v < TARGETS.trainingMemoryMb,
      'not measured',
    ),
  ];
}

/**
 * Reads what trained and the peak memory from a train step summary when present: `peakRssMb`
 * (the agreed name) or `peakRssMiB` (what the train step writes; MiB, close enough to MB for a 2 GB check).
 * `backend` is a label of what actually ran the steps: "onnx (ONNX Runtime CPU, 2 threads)" for the
 * onnx engine (the tfjs backend, often 'wasm', did not train then), "tfjs wasm" for the tfjs engine;
 * summaries written before the engine was recorded give their tfjs backend as it was.
 */
export function trainingFacts(summary: Record<string, unknown> | undefined): {
  model: string | null;
  backend: string | null;
  peakRssMb: number | null;
  deviceFallback?: string;
} {
  const backend = typeof summary?.backend === 'string' ? summary.backend : null;
  const model = summary?.model;
  const rss = summary?.peakRssMb ?? summary?.peakRssMiB;
  const fallback = summary?.deviceFallback;
  return {
    model: typeof model === 'string' ? model : null,
    backend: trainingEngineLabel(summary, backend),
    peakRssMb: typeof rss === 'number' && Number.isFinite(rss) ? rss : null,
    ...(typeof fallback === 'string' && fallback ? { deviceFallback: fallback } : {}),
  };
}

const EP_NAMES: Record<string, string> = { cpu: 'CPU', cuda: 'CUDA', webgpu: 'WebGPU' };

function trainingEngineLabel(
  summary: Record<string, unknown> | undefined,
  backend: string | null,
): string | null {
  const engine = summary?.engine;
  if (engine === 'tfjs') return `tfjs ${backend ?? '?'}`;
  if (engine !== 'onnx') return backend;
  const ep = typeof summary?.executionProvider === 'string' ? summary.executionProvider : 'cpu';
  const parts = [`ONNX Runtime ${EP_NAMES[ep] ?? ep}`];
  if (typeof summary?.gpu === 'string' && ep !== 'cpu') parts.push(`host GPU ${summary.gpu}`);
  if (typeof summary?.threads === 'number')
    parts.push(`${summary.threads} ${ep === 'cpu' ? '' : 'CPU '}threads`);
  return `onnx (${parts.join(', ')})`;
}

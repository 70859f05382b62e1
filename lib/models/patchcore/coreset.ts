/**
 * Greedy k-center coreset selection (PatchCore, after Sener & Savarese): start from a seeded random
 * patch, then repeatedly add the patch farthest from everything selected so far. Distances are
 * measured after a seeded Gaussian random projection to `projectionDim` dimensions
 * (Johnson-Lindenstrauss: distances are kept within a small factor at a fraction of the cost), as the
 * paper does. Each iteration is one matrix-vector product over all patches; it runs on ONNX Runtime
 * (native, multi-threaded) with the projected patches held as a constant of the session.
 */
import { availableParallelism } from 'node:os';
import { GraphBuilder } from '../../model/onnx-graph';
import { encodeModel, floatTensor, int, valueInfo } from '../../model/onnx-proto';
import { ortSessionOptions } from '../../model/onnx-session';
import { Rng } from '../../util/rng';

export interface CoresetOptions {
  /** Patches to keep. */
  size: number;
  /** Dimension distances are measured in; >= dim: no projection. */
  projectionDim: number;
  seed: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (selected: number, total: number) => void;
}

/** Seeded N(0, 1/k) projection matrix [dim, k]. */
export function projectionMatrix(dim: number, k: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const r = new Float32Array(dim * k);
  const scale = 1 / Math.sqrt(k);
  for (let i = 0; i < r.length; i++) r[i] = rng.normal() * scale;
  return r;
}

/** x [n, dim] times r [dim, k], row-major. */
function project(x: Float32Array, n: number, dim: number, r: Float32Array, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    for (let d = 0; d < dim; d++) {
      const v = x[i * dim + d];
      if (v === 0) continue;
      const rd = d * k;
      for (let j = 0; j < k; j++) out[o + j] += v * r[rd + j];
    }
  }
  return out;
}

/** One greedy step as a graph: given the newest centre and the running minimum distances, update them. */
function stepModel(points: Float32Array, n: number, k: number): Uint8Array {
  const g = new GraphBuilder();
  const sq = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += points[i * k + j] ** 2;
    sq[i] = s;
  }
  g.initializers.push(floatTensor('coreset/points', [n, k], points));
  g.initializers.push(floatTensor('coreset/points_sq', [n], sq));
  // |x - c|^2 = |x|^2 - 2 x.c + |c|^2
  const dot = g.op('Reshape', [
    g.op('MatMul', ['coreset/points', g.transpose('centre', [1, 0])]),
    g.ints64([-1]),
  ]);
  const csq = g.op('ReduceSumSquare', ['centre'], [int('keepdims', 0)]);
  const d = g.op('Add', [g.op('Sub', ['coreset/points_sq', g.op('Mul', [dot, g.floats([2])])]), csq]);
  g.op('Min', ['min_dist', d], [], 'new_min');
  g.op(
    'Cast',
    [g.op('ArgMax', ['new_min'], [int('axis', 0), int('keepdims', 1)])],
    [int('to', 1)],
    'farthest',
  );
  return encodeModel({
    name: 'coreset-step',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo('centre', [1, k]), valueInfo('min_dist', [n])],
    outputs: [valueInfo('new_min', [n]), valueInfo('farthest', [1])],
  });
}

/**
 * Indices (into the n rows of `features` [n, dim]) of a greedy k-center coreset of `opts.size` rows,
 * in selection order. Deterministic for a seed.
 */
export async function kCenterCoreset(
  features: Float32Array,
  n: number,
  dim: number,
  opts: CoresetOptions,
): Promise<Int32Array> {
  const size = Math.min(opts.size, n);
  if (size >= n) return Int32Array.from({ length: n }, (_, i) => i);
  const k = Math.min(opts.projectionDim, dim);
  const points = k < dim ? project(features, n, dim, projectionMatrix(dim, k, opts.seed), k) : features;
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(
    stepModel(points, n, k),
    ortSessionOptions({ threads: opts.threads ?? availableParallelism() }),
  );
  try {
    const selected = new Int32Array(size);
    selected[0] = new Rng(opts.seed ^ 0x5eed).int(n);
    let minDist: Float32Array = new Float32Array(n).fill(Number.MAX_VALUE);
    for (let i = 1; i < size; i++) {
      if (opts.signal?.aborted) throw new Error('coreset selection cancelled');
      const c = selected[i - 1];
      const out = await session.run({
        centre: new ort.Tensor('float32', points.slice(c * k, (c + 1) * k), [1, k]),
        min_dist: new ort.Tensor('float32', minDist, [n]),
      });
      minDist = out.new_min.data as Float32Array;
      selected[i] = (out.farthest.data as Float32Array)[0];
      if (i % 256 === 0) opts.onProgress?.(i, size);
    }
    opts.onProgress?.(size, size);
    return selected;
  } finally {
    await session.release();
  }
}

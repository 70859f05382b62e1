/**
 * Greedy k-center coreset selection (PatchCore, after Sener & Savarese): start from a seeded random
 * patch, then repeatedly add the patch farthest from everything selected so far. Distances are
 * measured after a seeded Gaussian random projection to `projectionDim` dimensions
 * (Johnson-Lindenstrauss: distances are kept within a small factor at a fraction of the cost), as the
 * paper does.
 */
import { Rng } from '../../util/rng';

export interface CoresetOptions {
  /** Patches to keep. */
  size: number;
  /** Dimension distances are measured in; >= dim: no projection. */
  projectionDim: number;
  seed: number;
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

/**
 * Indices (into the n rows of `features` [n, dim]) of a greedy k-center coreset of `opts.size` rows,
 * in selection order. Deterministic for a seed.
 *
 * Exact greedy, made fast by the triangle inequality (as in Elkan's k-means): a point whose nearest
 * centre so far is `a` at distance r cannot come closer to the new centre c than d(c, a) - r, so when
 * d(c, a) >= 2r its distance need not be computed. As the coreset grows the radii shrink and most
 * points are skipped; the selection is the same as the plain O(n * size) loop's.
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
  const x = k < dim ? project(features, n, dim, projectionMatrix(dim, k, opts.seed), k) : features;
  const selected = new Int32Array(size);
  const minD2 = new Float32Array(n).fill(Number.POSITIVE_INFINITY);
  const owner = new Int32Array(n).fill(-1); // index into `selected` of each point's nearest centre
  const cc = new Float32Array(size); // squared distance of the new centre to each earlier one
  const sqDist = (a: number, b: number) => {
    let s = 0;
    for (let j = 0, oa = a * k, ob = b * k; j < k; j++) {
      const d = x[oa + j] - x[ob + j];
      s += d * d;
    }
    return s;
  };
  selected[0] = new Rng(opts.seed ^ 0x5eed).int(n);
  let lastYield = performance.now();
  for (let i = 0; i < size; i++) {
    const c = selected[i];
    for (let j = 0; j < i; j++) cc[j] = sqDist(c, selected[j]);
    let far = 0;
    let farD = -1;
    for (let p = 0; p < n; p++) {
      const a = owner[p];
      // d(c,a)^2 >= 4 r^2  =>  d(p,c) >= r: no update.
      if (a < 0 || cc[a] < 4 * minD2[p]) {
        const d = sqDist(p, c);
        if (d < minD2[p]) {
          minD2[p] = d;
          owner[p] = i;
        }
      }
      if (minD2[p] > farD) {
        farD = minD2[p];
        far = p;
      }
    }
    if (i + 1 < size) selected[i + 1] = far;
    if (performance.now() - lastYield > 200) {
      // Let heartbeats and cancellation through on long selections.
      if (opts.signal?.aborted) throw new Error('coreset selection cancelled');
      opts.onProgress?.(i + 1, size);
      await new Promise((r) => setImmediate(r));
      lastYield = performance.now();
    }
  }
  opts.onProgress?.(size, size);
  return selected;
}

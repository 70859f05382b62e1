/**
 * Greedy k-center coreset selection (PatchCore, after Sener & Savarese): start from a seeded random
 * patch, then repeatedly add the patch farthest from everything selected so far. Distances are
 * measured after a seeded Gaussian random projection to `projectionDim` dimensions
 * (Johnson-Lindenstrauss: distances are kept within a small factor at a fraction of the cost), as the
 * paper does.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Rng } from '../../util/rng';

export interface CoresetOptions {
  /** Patches to keep. */
  size: number;
  /** Dimension distances are measured in; >= dim: no projection. */
  projectionDim: number;
  seed: number;
  /** Threads sharing the distance updates (default: all cores); the selection does not depend on it. */
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

/**
 * One greedy step over the points [lo, hi): each point's distance to the new centre `c` (number `i`),
 * skipped where the triangle inequality rules out an update, then the farthest point of the range
 * (the first one on ties). Self-contained (no closures), so worker threads run the same source.
 */
function updateRange(
  x: Float32Array,
  k: number,
  minD2: Float32Array,
  owner: Int32Array,
  cc: Float32Array,
  c: number,
  i: number,
  lo: number,
  hi: number,
): [number, number] {
  let far = lo;
  let farD = -1;
  const oc = c * k;
  for (let p = lo; p < hi; p++) {
    const a = owner[p];
    // d(c,a)^2 >= 4 r^2  =>  d(p,c) >= r: no update.
    if (a < 0 || cc[a] < 4 * minD2[p]) {
      let d = 0;
      for (let j = 0, op = p * k; j < k; j++) {
        const t = x[op + j] - x[oc + j];
        d += t * t;
      }
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
  return [far, farD];
}

/** A worker thread running updateRange on its share of the points, step by step, on shared memory. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const updateRange = eval('(' + workerData.fn + ')');
const x = new Float32Array(workerData.x), minD2 = new Float32Array(workerData.minD2);
const owner = new Int32Array(workerData.owner), cc = new Float32Array(workerData.cc);
const ctrl = new Int32Array(workerData.ctrl), res = new Float64Array(workerData.res);
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, 0, seen);
  seen = Atomics.load(ctrl, 0);
  if (ctrl[1] < 0) break;
  const r = updateRange(x, workerData.k, minD2, owner, cc, ctrl[1], ctrl[2], workerData.lo, workerData.hi);
  res[workerData.slot * 2] = r[0];
  res[workerData.slot * 2 + 1] = r[1];
  Atomics.add(ctrl, 3, 1);
  Atomics.notify(ctrl, 3);
}
`;

/** Below this much work per step, threads cost more than they save. */
const MIN_PARALLEL_WORK = 1 << 21;

/**
 * Indices (into the n rows of `features` [n, dim]) of a greedy k-center coreset of `opts.size` rows,
 * in selection order. Deterministic for a seed, and the same for any number of threads.
 *
 * Exact greedy, made fast by the triangle inequality (as in Elkan's k-means): a point whose nearest
 * centre so far is `a` at distance r cannot come closer to the new centre c than d(c, a) - r, so when
 * d(c, a) >= 2r its distance need not be computed. As the coreset grows the radii shrink and most
 * points are skipped; the selection is the same as the plain O(n * size) loop's. The points are split
 * between `threads` threads (shared memory, one barrier per step).
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
  const projected = k < dim ? project(features, n, dim, projectionMatrix(dim, k, opts.seed), k) : features;
  const threads =
    n * k < MIN_PARALLEL_WORK ? 1 : Math.max(1, Math.min(opts.threads ?? availableParallelism(), 8));
  const shared = <T extends Float32Array | Int32Array | Float64Array>(
    make: (b: SharedArrayBuffer) => T,
    bytes: number,
  ): T => make(new SharedArrayBuffer(bytes));
  const x = shared((b) => new Float32Array(b), n * k * 4);
  x.set(projected.subarray(0, n * k));
  const minD2 = shared((b) => new Float32Array(b), n * 4).fill(Number.POSITIVE_INFINITY);
  const owner = shared((b) => new Int32Array(b), n * 4).fill(-1); // index into `selected` of each point's nearest centre
  const cc = shared((b) => new Float32Array(b), size * 4); // squared distance of the new centre to each earlier one
  const ctrl = shared((b) => new Int32Array(b), 16); // [generation, centre (-1: stop), step, done]
  const res = shared((b) => new Float64Array(b), threads * 16);
  const bounds = Array.from({ length: threads + 1 }, (_, t) => Math.round((t * n) / threads));
  const workers: Worker[] = [];
  for (let t = 1; t < threads; t++) {
    workers.push(
      new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          fn: updateRange.toString(),
          x: x.buffer,
          minD2: minD2.buffer,
          owner: owner.buffer,
          cc: cc.buffer,
          ctrl: ctrl.buffer,
          res: res.buffer,
          k,
          lo: bounds[t],
          hi: bounds[t + 1],
          slot: t,
        },
      }),
    );
  }
  const selected = new Int32Array(size);
  selected[0] = new Rng(opts.seed ^ 0x5eed).int(n);
  let lastYield = performance.now();
  try {
    for (let i = 0; i < size; i++) {
      const c = selected[i];
      for (let j = 0; j < i; j++) {
        let s = 0;
        for (let d = 0, oa = c * k, ob = selected[j] * k; d < k; d++) {
          const t = x[oa + d] - x[ob + d];
          s += t * t;
        }
        cc[j] = s;
      }
      if (workers.length > 0) {
        ctrl[1] = c;
        ctrl[2] = i;
        Atomics.store(ctrl, 3, 0);
        Atomics.add(ctrl, 0, 1);
        Atomics.notify(ctrl, 0);
      }
      [res[0], res[1]] = updateRange(x, k, minD2, owner, cc, c, i, bounds[0], bounds[1]);
      for (let done = Atomics.load(ctrl, 3); done < workers.length; done = Atomics.load(ctrl, 3))
        Atomics.wait(ctrl, 3, done);
      // The first range with the largest distance: the point the single-threaded loop picks.
      let best = 0;
      for (let t = 1; t < threads; t++) if (res[t * 2 + 1] > res[best * 2 + 1]) best = t;
      if (i + 1 < size) selected[i + 1] = res[best * 2];
      if (performance.now() - lastYield > 200) {
        // Let heartbeats and cancellation through on long selections.
        if (opts.signal?.aborted) throw new Error('coreset selection cancelled');
        opts.onProgress?.(i + 1, size);
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  } finally {
    ctrl[1] = -1;
    Atomics.add(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    await Promise.all(workers.map((w) => w.terminate()));
  }
  opts.onProgress?.(size, size);
  return selected;
}

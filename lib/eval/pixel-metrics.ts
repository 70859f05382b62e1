import { defined, type MetricValue, undefinedBecause } from './metric-value';
import { labelRegions8 } from './regions';
import { argsortDescending } from './sort';

/**
 * Pixel-level localisation metrics over all pixels of a set of maps (the test split):
 * AUROC and AP (exact, ties as sklearn), and AUPRO integrated up to an FPR limit and divided by it,
 * computed as the official MVTec AD evaluation script does (generic_util.trapezoid, compute_pro):
 * 8-connected ground-truth regions; at every distinct map value, PRO = mean over all regions of the
 * fraction of the region's pixels at or above it, FPR = fraction of non-defect pixels at or above it;
 * curve closed with (0,0) and (1,1); trapezoid integration with linear interpolation at the limit.
 */
export interface PixelMetrics {
  pixels: number;
  defectPixels: number;
  regions: number;
  auroc: MetricValue;
  ap: MetricValue;
  aupro: MetricValue;
  fprLimit: number;
}

export function pixelMetrics(
  maps: Float32Array,
  masks: Uint8Array,
  n: number,
  height: number,
  width: number,
  fprLimit = 0.3,
): PixelMetrics {
  const hw = height * width;
  if (maps.length !== n * hw || masks.length !== n * hw)
    throw new Error(`pixel metrics: expected ${n}x${height}x${width} maps and masks`);
  // Per-pixel increment of the PRO sum: 1/|region| for region pixels, 0 elsewhere.
  const proWeight = new Float64Array(n * hw);
  let regions = 0;
  for (let i = 0; i < n; i++) {
    const mask = masks.subarray(i * hw, (i + 1) * hw);
    const r = labelRegions8(mask, height, width);
    regions += r.count;
    for (let p = 0; p < hw; p++) if (r.labels[p]) proWeight[i * hw + p] = 1 / r.sizes[r.labels[p] - 1];
  }
  const order = argsortDescending(maps);
  // Cumulative counts at each distinct value, highest first (typed arrays: millions of pixels).
  const total = order.length;
  const tps = new Float64Array(total);
  const fps = new Float64Array(total);
  const pros = new Float64Array(total);
  let k = 0;
  let tp = 0;
  let fp = 0;
  let pro = 0;
  for (let i = 0; i < total; i++) {
    const j = order[i];
    if (masks[j]) {
      tp++;
      pro += proWeight[j];
    } else fp++;
    if (i === total - 1 || maps[order[i + 1]] !== maps[j]) {
      tps[k] = tp;
      fps[k] = fp;
      pros[k] = pro;
      k++;
    }
  }
  const P = tp;
  const N = fp;
  const base = { pixels: n * hw, defectPixels: P, regions, fprLimit };
  let reason: string | null = null;
  if (P === 0) reason = 'no defect pixels in the ground truth';
  else if (N === 0) reason = 'no defect-free pixels in the ground truth';
  else if (k === 1) reason = 'all map values are equal (no ranking to evaluate)';
  if (reason) {
    const u = undefinedBecause(reason);
    return { ...base, auroc: u, ap: u, aupro: u };
  }

  let auc = 0;
  let ap = 0;
  let prevFpr = 0;
  let prevTpr = 0;
  for (let q = 0; q < k; q++) {
    const fpr = fps[q] / N;
    const tpr = tps[q] / P;
    auc += ((fpr - prevFpr) * (tpr + prevTpr)) / 2;
    ap += (tpr - prevTpr) * (tps[q] / (tps[q] + fps[q]));
    prevFpr = fpr;
    prevTpr = tpr;
  }

  // PRO curve closed with (0,0) and (1,1), values clipped at 1 against rounding, as the reference does.
  const x = new Float64Array(k + 2);
  const y = new Float64Array(k + 2);
  for (let q = 0; q < k; q++) {
    x[q + 1] = Math.min(fps[q] / N, 1);
    y[q + 1] = Math.min(pros[q] / regions, 1);
  }
  x[k + 1] = 1;
  y[k + 1] = 1;
  return {
    ...base,
    auroc: defined(auc),
    ap: defined(ap),
    aupro: defined(trapezoid(x, y, fprLimit) / fprLimit),
  };
}

/**
 * Area under y(x) from x[0] to xMax (x non-decreasing), port of the MVTec AD evaluation's
 * `trapezoid`: if xMax is not a sample, the last segment is cut at xMax by linear interpolation.
 */
export function trapezoid(x: ArrayLike<number>, y: ArrayLike<number>, xMax: number): number {
  let correction = 0;
  let ins = 0; // bisect_right; x is non-decreasing, so "xMax in x" is x[ins - 1] === xMax
  while (ins < x.length && x[ins] <= xMax) ins++;
  if (ins === 0 || x[ins - 1] !== xMax) {
    if (ins <= 0 || ins >= x.length)
      throw new Error(`trapezoid: limit ${xMax} outside [${x[0]}, ${x[x.length - 1]}]`);
    const yInterp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (xMax - x[ins - 1])) / (x[ins] - x[ins - 1]);
    correction = 0.5 * (yInterp + y[ins - 1]) * (xMax - x[ins - 1]);
  }
  let area = 0;
  for (let i = 1; i < x.length && x[i] <= xMax; i++) area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
  return area + correction;
}

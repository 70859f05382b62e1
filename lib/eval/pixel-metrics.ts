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
  // Cumulative counts at each distinct value, highest first.
  const tps: number[] = [];
  const fps: number[] = [];
  const pros: number[] = [];
  let tp = 0;
  let fp = 0;
  let pro = 0;
  for (let i = 0; i < order.length; i++) {
    const j = order[i];
    if (masks[j]) {
      tp++;
      pro += proWeight[j];
    } else fp++;
    if (i === order.length - 1 || maps[order[i + 1]] !== maps[j]) {
      tps.push(tp);
      fps.push(fp);
      pros.push(pro);
    }
  }
  const P = tp;
  const N = fp;
  const base = { pixels: n * hw, defectPixels: P, regions, fprLimit };
  let reason: string | null = null;
  if (P === 0) reason = 'no defect pixels in the ground truth';
  else if (N === 0) reason = 'no defect-free pixels in the ground truth';
  else if (tps.length === 1) reason = 'all map values are equal (no ranking to evaluate)';
  if (reason) {
    const u = undefinedBecause(reason);
    return { ...base, auroc: u, ap: u, aupro: u };
  }

  let auc = 0;
  let ap = 0;
  let prevFpr = 0;
  let prevTpr = 0;
  for (let k = 0; k < tps.length; k++) {
    const fpr = fps[k] / N;
    const tpr = tps[k] / P;
    auc += ((fpr - prevFpr) * (tpr + prevTpr)) / 2;
    ap += (tpr - prevTpr) * (tps[k] / (tps[k] + fps[k]));
    prevFpr = fpr;
    prevTpr = tpr;
  }

  const x = [0, ...fps.map((f) => Math.min(f / N, 1)), 1];
  const y = [0, ...pros.map((p) => Math.min(p / regions, 1)), 1];
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
export function trapezoid(x: number[], y: number[], xMax: number): number {
  let correction = 0;
  if (!x.includes(xMax)) {
    let ins = 0; // bisect_right
    while (ins < x.length && x[ins] <= xMax) ins++;
    if (ins <= 0 || ins >= x.length)
      throw new Error(`trapezoid: limit ${xMax} outside [${x[0]}, ${x.at(-1)}]`);
    const yInterp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (xMax - x[ins - 1])) / (x[ins] - x[ins - 1]);
    correction = 0.5 * (yInterp + y[ins - 1]) * (xMax - x[ins - 1]);
  }
  let area = 0;
  for (let i = 1; i < x.length && x[i] <= xMax; i++) area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
  return area + correction;
}

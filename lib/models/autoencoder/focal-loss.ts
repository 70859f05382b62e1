/**
 * Focal loss (Lin et al. 2017) for a per-pixel anomaly-mask prediction: the discriminative head of
 * DRAEM (a second small U-Net on concat(input, reconstruction), not built yet) is trained with it
 * against the exact masks of lib/data/anomaly-generator.
 *
 *   p_t = m p + (1 - m)(1 - p)        (p: predicted anomaly probability, m: mask in [0, 1])
 *   FL  = -w_t (1 - p_t)^gamma log(p_t),   w_t = alpha m + (1 - alpha)(1 - m), or 1 when alpha is null
 *
 * gamma = 0 and alpha = null is binary cross-entropy; gamma = 2 (DRAEM's setting) scales a
 * well-classified pixel (p_t = 0.9) down 100x, so the few anomalous pixels are not drowned by the
 * many easy normal ones. p_t is clamped to [eps, 1] (log 0). Reduction: mean (default) or sum.
 */

export interface FocalLossOptions {
  /** Focusing parameter, >= 0 (default 2). */
  gamma?: number;
  /** Weight of the positive (anomalous) class in [0, 1], 1 - alpha for the negatives; null: 1 for both. */
  alpha?: number | null;
  /** Lower clamp of p_t (default 1e-6). */
  eps?: number;
  reduction?: 'mean' | 'sum';
}

export interface FocalLossResult {
  loss: number;
  /** dLoss/dp, one per pixel. */
  grad: Float32Array;
}

/** Loss and its gradient w.r.t. the probabilities, over all pixels of `prob` (any layout, same as mask). */
export function focalLoss(
  prob: ArrayLike<number>,
  mask: ArrayLike<number>,
  options: FocalLossOptions = {},
): FocalLossResult {
  const gamma = options.gamma ?? 2;
  const alpha = options.alpha ?? null;
  const eps = options.eps ?? 1e-6;
  if (prob.length !== mask.length)
    throw new Error(`focal loss: ${prob.length} probabilities, ${mask.length} mask values`);
  if (gamma < 0) throw new Error('focal loss: gamma must be >= 0');
  if (alpha !== null && (alpha < 0 || alpha > 1)) throw new Error('focal loss: alpha must lie in [0, 1]');
  const n = prob.length;
  const scale = options.reduction === 'sum' || n === 0 ? 1 : 1 / n;
  const grad = new Float32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const p = prob[i];
    const m = mask[i];
    const raw = m * p + (1 - m) * (1 - p);
    const clamped = raw < eps;
    const pt = clamped ? eps : raw;
    const w = alpha === null ? 1 : alpha * m + (1 - alpha) * (1 - m);
    const q = 1 - pt;
    const logPt = Math.log(pt);
    const focus = gamma === 0 ? 1 : q ** gamma;
    total += -w * focus * logPt;
    if (clamped) continue; // constant below the clamp
    // dFL/dpt = w (gamma q^(gamma-1) log pt - q^gamma / pt);  dpt/dp = 2m - 1
    const dq = gamma === 0 ? 0 : gamma * q ** (gamma - 1);
    grad[i] = w * (dq * logPt - focus / pt) * (2 * m - 1) * scale;
  }
  return { loss: total * scale, grad };
}

/** The same from logits z (p = sigmoid(z)): the gradient is w.r.t. z. */
export function focalLossFromLogits(
  logits: ArrayLike<number>,
  mask: ArrayLike<number>,
  options: FocalLossOptions = {},
): FocalLossResult {
  const p = Float64Array.from(logits, (z) => 1 / (1 + Math.exp(-z)));
  const r = focalLoss(p, mask, options);
  for (let i = 0; i < p.length; i++) r.grad[i] *= p[i] * (1 - p[i]);
  return r;
}

/**
 * The focal loss (Lin et al. 2017) as ONNX forward nodes, differentiable by lib/onnx/autodiff: shared by
 * the standalone focal-loss graph (lib/models/autoencoder/focal-loss-graph) and the DRAEM training graph
 * (lib/models/draem/graphs), so both train on the same formula as lib/models/autoencoder/focal-loss.
 *   loss = mean( -w (1 - pt)^gamma log(pt) ),  pt = m p + (1 - m)(1 - p),  w = m alpha + (1 - m)(1 - alpha)
 */
import type { GraphBuilder } from './graph';
import { int } from './proto';

export interface FocalTerms {
  gamma: number;
  /** null: no class weighting. */
  alpha: number | null;
  /** pt is clamped below at eps (no gradient there), so log stays finite. */
  eps: number;
}

/** Appends the mean focal loss of `prob` against `mask` (same shape); returns its [] tensor. */
export function appendFocalLoss(
  g: GraphBuilder,
  prob: string,
  mask: string,
  o: FocalTerms,
  output?: string,
): string {
  const one = g.floats([1]);
  const notM = g.op('Sub', [one, mask]);
  const pt = g.op('Add', [g.op('Mul', [mask, prob]), g.op('Mul', [notM, g.op('Sub', [one, prob])])]);
  const eps = g.floats([o.eps]);
  const ptc = g.op('Where', [g.op('Less', [pt, eps]), eps, pt]);
  const q = g.op('Sub', [one, ptc]);
  const focus =
    o.gamma === 0 ? null : o.gamma === 2 ? g.op('Mul', [q, q]) : g.op('Pow', [q, g.floats([o.gamma])]);
  const w =
    o.alpha === null
      ? null
      : g.op('Add', [g.op('Mul', [mask, g.floats([o.alpha])]), g.op('Mul', [notM, g.floats([1 - o.alpha])])]);
  let term = g.op('Log', [ptc]);
  if (focus) term = g.op('Mul', [focus, term]);
  if (w) term = g.op('Mul', [w, term]);
  return g.op('ReduceMean', [g.op('Neg', [term])], [int('keepdims', 0)], output);
}

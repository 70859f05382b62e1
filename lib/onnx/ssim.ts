/**
 * SSIM of ssimMap (lib/model/ssim) from its five Gaussian-blurred moments, as ONNX nodes: shared by the
 * anomaly-map graph (lib/models/autoencoder/anomaly-map-graph) and the loss graph (lib/models/autoencoder/loss-graph), which
 * blur the moments their own way and, for the loss, also need the intermediate terms for the gradient.
 */

import { SSIM_DEFAULTS } from '../model/ssim';
import type { GraphBuilder } from './graph';

/** Names of the blurred moments of images a and b: E[a], E[b], E[a²], E[b²], E[ab]. */
export type SsimMoments = [muA: string, muB: string, eAA: string, eBB: string, eAB: string];

/**
 * SSIM = A1 A2 / (D1 D2) with A1 = 2 muA muB + c1, A2 = 2 sAB + c2, D1 = muA² + muB² + c1,
 * D2 = sA + sB + c2, c1 = (0.01 L)², c2 = (0.03 L)².
 */
export function ssimFromMoments(
  g: GraphBuilder,
  [muA, muB, eAA, eBB, eAB]: SsimMoments,
): { a1: string; a2: string; d1: string; d2: string; den: string; map: string } {
  const { maxVal } = SSIM_DEFAULTS;
  const c1 = g.floats([(0.01 * maxVal) ** 2]);
  const c2 = g.floats([(0.03 * maxVal) ** 2]);
  const two = g.floats([2]);
  const muA2 = g.op('Mul', [muA, muA]);
  const muB2 = g.op('Mul', [muB, muB]);
  const muAB = g.op('Mul', [muA, muB]);
  const sA = g.op('Sub', [eAA, muA2]);
  const sB = g.op('Sub', [eBB, muB2]);
  const sAB = g.op('Sub', [eAB, muAB]);
  const a1 = g.op('Add', [g.op('Mul', [muAB, two]), c1]);
  const a2 = g.op('Add', [g.op('Mul', [sAB, two]), c2]);
  const d1 = g.op('Add', [g.op('Add', [muA2, muB2]), c1]);
  const d2 = g.op('Add', [g.op('Add', [sA, sB]), c2]);
  const den = g.op('Mul', [d1, d2]);
  return { a1, a2, d1, d2, den, map: g.op('Div', [g.op('Mul', [a1, a2]), den]) };
}

/**
 * The training loss of lib/models/autoencoder/losses (mse, ssim, edge; not the perceptual term, which runs a user's
 * tfjs model) and its gradient w.r.t. the reconstruction as one ONNX graph, so that the ONNX Runtime
 * training engine never leaves native kernels: on tfjs-wasm the loss and its autodiff cost ~300 ms of a
 * ~1100 ms step (128 px, batch 8) and ~300 MB of wasm heap at batch 32.
 *
 *   in:  target x, reconstruction p: [N,S,S,3] NHWC float32
 *   out: the weighted total, each configured term (unweighted), dTotal/dp (NHWC)
 *
 * Forward op for op as the tfjs code, in NCHW; the backward is written out by hand (ONNX has no autodiff).
 * With M = N*S*S*3 and w the term's weight:
 *   mse   mean (x - p)^2                          dp = 2w/M (p - x)
 *   ssim  1 - mean SSIM(x, p), SSIM as ssimMap: Gaussian 11x11 sigma 1.5 as two 1-D convolutions with
 *         zero 'same' padding (B), muA = B x, muB = B p, sA = B x^2 - muA^2, sB = B p^2 - muB^2,
 *         sAB = B xp - muA muB, S = A1 A2 / (D1 D2) with A1 = 2 muA muB + c1, A2 = 2 sAB + c2,
 *         D1 = muA^2 + muB^2 + c1, D2 = sA + sB + c2. With r = -2w/(M D1 D2), a1 = r A2, a2 = r A1,
 *         d1 = -r S D2, d2 = -r S D1 (twice dS/dA1, dS/dA2, dS/dD1, dS/dD2, times -w/M):
 *           dp = B'(muA (a1 - a2) + muB (d1 - d2)) + x B'(a2) + p B'(d2)
 *         where B' is B's adjoint: the same 1-D convolutions with the flipped kernel, in reverse order.
 *   edge  mean |mag(x) - mag(p)|, mag = sqrt(gx^2 + gy^2 + EDGE_EPS), Sobel gx, gy with zero padding.
 *         dmag(p) = w/M * (mag(x) > mag(p) ? -1 : 1) (tfjs' |u|' is step(u, -1): -1 at u = 0, which the
 *         gradient at p == x shows); dgx = dmag gx / mag(p); dp = Sobel' of (dgx, dgy) (flipped kernels).
 * Per-channel filters are grouped convolutions (group = channels): ONNX Runtime runs them ~4x faster
 * than single-channel convolutions of the same maps, and a little faster than a banded MatMul (128 px).
 * test/model-onnx-loss.test.ts compares every term and the gradient with tfjs' autodiff of losses.ts.
 */

import { gaussianKernel1d, SSIM_DEFAULTS } from '../../model/ssim';
import { GraphBuilder } from '../../onnx/graph';
import { encodeModel, floatTensor, int, ints, valueInfo } from '../../onnx/proto';
import { type SsimMoments, ssimFromMoments } from '../../onnx/ssim';
import { EDGE_EPS, type LossTerm, SOBEL_X, SOBEL_Y } from './losses';
import { TRAIN_OUTPUT_GRAD } from './train-graph';

export const LOSS_TARGET = 'target';
export const LOSS_PRED = 'reconstruction';
/** Weighted total, shape []. */
export const LOSS_TOTAL = 'loss';
/** dTotal/dReconstruction, NHWC; named as the backward graph's input, so it feeds it as is. */
export const LOSS_GRAD = TRAIN_OUTPUT_GRAD;
/** The unweighted value of one term, shape []. */
export const lossTermName = (term: OnnxLossTerm) => `loss/${term}`;

export type OnnxLossTerm = Exclude<LossTerm, 'perceptual'>;
export const ONNX_LOSS_TERMS: readonly OnnxLossTerm[] = ['mse', 'ssim', 'edge'];

const CHANNELS = 3;

/** The terms the graph computes for these weights: the non-zero ones, in ONNX_LOSS_TERMS order. */
export function onnxLossTerms(weights: Partial<Record<LossTerm, number>>): OnnxLossTerm[] {
  if ((weights.perceptual ?? 0) > 0)
    throw new Error('onnx loss graph: the perceptual term runs a tfjs model and has no ONNX graph');
  return ONNX_LOSS_TERMS.filter((t) => (weights[t] ?? 0) > 0);
}

/** A [] float constant (GraphBuilder.floats makes [n] tensors; the loss outputs are scalars). */
function scalar(g: GraphBuilder, name: string, v: number): string {
  const key = `loss/${name}`;
  g.initializers.push(floatTensor(key, [], Float32Array.of(v)));
  return key;
}

/**
 * A grouped Conv (stride 1) applying the same weights to every group of `groups`: `block` is one
 * group's weights, [out, in, kh, kw] flattened, `pads` ONNX order (top, left, bottom, right).
 */
function groupedConv(
  g: GraphBuilder,
  x: string,
  name: string,
  block: number[],
  dims: [number, number, number, number],
  groups: number,
  pads: number[],
): string {
  const [o, i, kh, kw] = dims;
  const key = `loss/${name}`;
  if (!g.initializers.some((t) => t.name === key)) {
    const data = new Float32Array(groups * block.length);
    for (let c = 0; c < groups; c++) data.set(block, c * block.length);
    g.initializers.push(floatTensor(key, [groups * o, i, kh, kw], data));
  }
  return g.op('Conv', [x, key], [ints('kernel_shape', [kh, kw]), ints('pads', pads), int('group', groups)]);
}

/** A 1-D filter `k` along W or H of every channel of [N,C,S,S], zero 'same' padding. */
function filter1d(g: GraphBuilder, x: string, c: number, k: number[], axis: 'w' | 'h', tag: string) {
  const r = (k.length - 1) / 2;
  return axis === 'w'
    ? groupedConv(g, x, `${tag}/1x${k.length}:${c}`, k, [1, 1, 1, k.length], c, [0, r, 0, r])
    : groupedConv(g, x, `${tag}/${k.length}x1:${c}`, k, [1, 1, k.length, 1], c, [r, 0, r, 0]);
}

/** ssimMap's separable Gaussian blur: along W, then along H (as tfjs). */
const blur = (g: GraphBuilder, x: string, c: number, k: number[]) =>
  filter1d(g, filter1d(g, x, c, k, 'w', 'blur'), c, k, 'h', 'blur');

/** The adjoint of `blur`: the flipped kernel (a correlation's adjoint has the same zero pads), H first. */
function blurAdjoint(g: GraphBuilder, x: string, c: number, k: number[]): string {
  const flipped = [...k].reverse();
  return filter1d(g, filter1d(g, x, c, flipped, 'h', 'blur-adjoint'), c, flipped, 'w', 'blur-adjoint');
}

const flip3x3 = (k: readonly number[]) => [...k].reverse(); // 180 degree rotation of a row-major 3x3

/**
 * Loss graph for `imageSize` x `imageSize` RGB images and these weights: only the terms with a
 * non-zero weight are computed and output (lossTermName). Throws for a perceptual weight > 0.
 */
export function buildLossGraph(imageSize: number, weights: Partial<Record<LossTerm, number>>): Uint8Array {
  const terms = onnxLossTerms(weights);
  const s = imageSize;
  const c = CHANNELS;
  const g = new GraphBuilder();
  // 1/M, M = N*S*S*C: the batch is symbolic, so the mean's gradient scale comes from the input shape.
  const batch = g.op('Cast', [g.op('Shape', [LOSS_PRED], [int('start', 0), int('end', 1)])], [int('to', 1)]);
  const invM = g.op('Reciprocal', [g.op('Mul', [batch, g.floats([s * s * c])])]);
  const coef = (k: number) => g.op('Mul', [invM, g.floats([k])]); // k/M, shape [1]

  const weighted: string[] = [];
  const nchwGrads: string[] = [];
  let mseGrad: string | null = null;
  // NCHW copies of the inputs for the filtering terms, made once on first use.
  let nchw: { xT: string; pT: string } | null = null;
  const toNchw = () => {
    nchw ??= { xT: g.transpose(LOSS_TARGET, [0, 3, 1, 2]), pT: g.transpose(LOSS_PRED, [0, 3, 1, 2]) };
    return nchw;
  };

  for (const term of terms) {
    const w = weights[term] ?? 0;
    let value: string;
    if (term === 'mse') {
      const d = g.op('Sub', [LOSS_PRED, LOSS_TARGET]);
      value = g.op('ReduceMean', [g.op('Mul', [d, d])], [int('keepdims', 0)], lossTermName(term));
      mseGrad = g.op('Mul', [d, coef(2 * w)]);
    } else if (term === 'ssim') {
      const { xT, pT } = toNchw();
      const { windowSize, sigma } = SSIM_DEFAULTS;
      const k = gaussianKernel1d(windowSize, sigma);
      // Each moment blurred on its own: a Concat + Split of the five would copy them twice.
      const moments = [xT, pT, g.op('Mul', [xT, xT]), g.op('Mul', [pT, pT]), g.op('Mul', [xT, pT])].map((m) =>
        blur(g, m, c, k),
      ) as SsimMoments;
      const [muA, muB] = moments;
      const { a1, a2, d1, d2, den, map } = ssimFromMoments(g, moments);
      value = g.op(
        'Sub',
        [scalar(g, 'one', 1), g.op('ReduceMean', [map], [int('keepdims', 0)])],
        [],
        lossTermName(term),
      );

      // Backward, with the names of the header comment.
      const r = g.op('Div', [coef(-2 * w), den]);
      const ga1 = g.op('Mul', [r, a2]);
      const ga2 = g.op('Mul', [r, a1]);
      const u = g.op('Mul', [g.op('Neg', [r]), map]);
      const gd1 = g.op('Mul', [u, d2]);
      const gd2 = g.op('Mul', [u, d1]);
      const gMuB = g.op('Add', [
        g.op('Mul', [muA, g.op('Sub', [ga1, ga2])]),
        g.op('Mul', [muB, g.op('Sub', [gd1, gd2])]),
      ]);
      const [bMu, bA2, bD2] = [gMuB, ga2, gd2].map((m) => blurAdjoint(g, m, c, k));
      nchwGrads.push(g.op('Sum', [bMu, g.op('Mul', [xT, bA2]), g.op('Mul', [pT, bD2])]));
    } else {
      const { xT, pT } = toNchw();
      // Sobel gx, gy of every channel: [N,C,S,S] -> [N,2C,S,S] (gx, gy adjacent) -> [N,C,2,S,S].
      const sobel = (z: string) => {
        const gxy = groupedConv(g, z, 'sobel', [...SOBEL_X, ...SOBEL_Y], [2, 1, 3, 3], c, [1, 1, 1, 1]);
        const g5 = g.op('Reshape', [gxy, g.ints64([0, c, 2, s, s])]);
        const q = g.op('ReduceSum', [g.op('Mul', [g5, g5]), g.ints64([2])], [int('keepdims', 0)]);
        return { g5, mag: g.op('Sqrt', [g.op('Add', [q, g.floats([EDGE_EPS])])]) };
      };
      const sx = sobel(xT);
      const sp = sobel(pT);
      const diff = g.op('Sub', [sx.mag, sp.mag]);
      value = g.op('ReduceMean', [g.op('Abs', [diff])], [int('keepdims', 0)], lossTermName(term));

      const sign = g.op('Where', [g.op('Greater', [sx.mag, sp.mag]), g.floats([-1]), g.floats([1])]);
      const dMagOverMag = g.op('Mul', [g.op('Div', [sign, sp.mag]), coef(w)]);
      const dg5 = g.op('Mul', [sp.g5, g.op('Unsqueeze', [dMagOverMag, g.ints64([2])])]);
      const dgxy = g.op('Reshape', [dg5, g.ints64([0, 2 * c, s, s])]);
      const back = [...flip3x3(SOBEL_X), ...flip3x3(SOBEL_Y)];
      nchwGrads.push(groupedConv(g, dgxy, 'sobel-adjoint', back, [1, 2, 3, 3], c, [1, 1, 1, 1]));
    }
    weighted.push(g.op('Mul', [value, scalar(g, `weight/${term}`, w)]));
  }

  // The gradient: NCHW parts summed and transposed once, plus the NHWC mse part.
  const nhwcGrads = mseGrad === null ? [] : [mseGrad];
  if (nchwGrads.length > 0)
    nhwcGrads.push(g.transpose(nchwGrads.length === 1 ? nchwGrads[0] : g.op('Sum', nchwGrads), [0, 2, 3, 1]));
  if (weighted.length === 0) {
    g.op('Identity', [scalar(g, 'zero', 0)], [], LOSS_TOTAL);
    g.op('Mul', [LOSS_PRED, g.floats([0])], [], LOSS_GRAD);
  } else {
    g.op('Sum', weighted, [], LOSS_TOTAL);
    g.op('Sum', nhwcGrads, [], LOSS_GRAD);
  }

  const image = () => ['N', s, s, c] as (number | string)[];
  return encodeModel({
    name: `loss_${terms.join('_') || 'zero'}`,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(LOSS_TARGET, image()), valueInfo(LOSS_PRED, image())],
    outputs: [
      valueInfo(LOSS_TOTAL, []),
      ...terms.map((t) => valueInfo(lossTermName(t), [])),
      valueInfo(LOSS_GRAD, image()),
    ],
  });
}

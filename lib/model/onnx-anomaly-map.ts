/**
 * The anomaly map and image score of lib/eval/anomaly-map (anomalyMapTensor + imageScoreTensor) as ONNX
 * nodes appended to the exported U-Net-lite graph (lib/model/onnx-export), so that one ONNX Runtime
 * session runs the whole per-batch computation: the map cost as much as the model on tfjs-wasm.
 *
 *   in:  image [N,H,W,3] NHWC float32 in [0,1]
 *   out: anomaly_map [N,H,W], score [N]
 *
 * Op for op the same arithmetic as the tfjs code (convolutions sum in their own order), in NCHW:
 *   mse  = mse_weight * ReduceMean_c (x - x')^2
 *   ssim = ssim_weight * (1 - ReduceMean_c SSIM(x, x')), SSIM as lib/model/ssim ssimMap: Gaussian 11x11
 *          sigma 1.5 window as two 1-D convolutions with zero 'same' padding, C1=(0.01L)^2, C2=(0.03L)^2
 *   map  = Gaussian blur of mse + ssim with symmetric (scipy 'reflect') padding, done with Gather on an
 *          index table: ONNX Pad's 'reflect' mode is numpy 'reflect' (edge pixel not repeated), not this.
 *   score = ReduceMax, or ReduceMean of TopK.
 * A weight of 0 leaves its term out, smoothing_sigma 0 skips the blur (as the tfjs code does).
 * test/eval-onnx-anomaly-map.test.ts compares maps and scores with scoreImages for several configs.
 */
import type * as tf from '@tensorflow/tfjs';
import type { AnomalyMapConfig } from '../config/schema';
import { checkAnomalyMapConfig, scoreBorder, smoothingKernel } from './anomaly-map-params';
import { inferenceGraph, ONNX_OUTPUT } from './onnx-export';
import { GraphBuilder } from './onnx-graph';
import { encodeModel, floatTensor, int, ints, valueInfo } from './onnx-proto';
import { ssimFromMoments } from './onnx-ssim';
import { gaussianKernel1d, SSIM_DEFAULTS } from './ssim';

export const ONNX_MAP_OUTPUT = 'anomaly_map';
export const ONNX_SCORE_OUTPUT = 'score';

/**
 * Separable blur of every channel of [M,C,H,W] on its own: along W (first, as tfjs does), then along H,
 * as grouped convolutions (group = C; ONNX Runtime runs them several times faster than the same maps as
 * a batch of single-channel convolutions). `pad` zero-pads each side ('same'); 0 for inputs that are
 * already padded ('valid').
 */
function separableBlur(g: GraphBuilder, x: string, c: number, k: number[], tag: string, pad: number): string {
  const conv = (input: string, kh: number, kw: number, pads: number[]) => {
    const name = `anomaly_map/${tag}/${kh}x${kw}`;
    const weights = new Float32Array(c * k.length);
    for (let ch = 0; ch < c; ch++) weights.set(k, ch * k.length);
    g.initializers.push(floatTensor(name, [c, 1, kh, kw], weights));
    return g.op(
      'Conv',
      [input, name],
      [ints('kernel_shape', [kh, kw]), ints('pads', pads), ints('strides', [1, 1]), int('group', c)],
    );
  };
  return conv(conv(x, 1, k.length, [0, pad, 0, pad]), k.length, 1, [pad, 0, pad, 0]);
}

/** Source index of every position of `size` + `radius` symmetric padding on each side (abc|cba). */
export function symmetricPadIndices(size: number, radius: number): number[] {
  if (radius > size)
    throw new Error(`symmetric padding of ${radius} needs at least ${radius} values, got ${size}`);
  return Array.from({ length: size + 2 * radius }, (_, j) => {
    const p = j - radius;
    return p < 0 ? -p - 1 : p >= size ? 2 * size - p - 1 : p;
  });
}

/** SSIM map [N,C,H,W] of NCHW a, b: the five Gaussian moments of every channel blurred in one pass. */
function ssimNchw(g: GraphBuilder, a: string, b: string, c: number): string {
  const { windowSize, sigma } = SSIM_DEFAULTS;
  const moments = g.op(
    'Concat',
    [a, b, g.op('Mul', [a, a]), g.op('Mul', [b, b]), g.op('Mul', [a, b])],
    [int('axis', 1)],
  );
  const blurred = separableBlur(
    g,
    moments,
    5 * c,
    gaussianKernel1d(windowSize, sigma),
    'ssim',
    (windowSize - 1) / 2,
  );
  const part = (i: number) =>
    g.op('Slice', [blurred, g.ints64([i * c]), g.ints64([(i + 1) * c]), g.ints64([1])]);
  return ssimFromMoments(g, [part(0), part(1), part(2), part(3), part(4)]).map;
}

const channelMean = (g: GraphBuilder, x: string) =>
  g.op('ReduceMean', [x], [ints('axes', [1]), int('keepdims', 1)]);

/**
 * Gaussian smoothing of [N,1,h,w] maps with mirror padding, as lib/eval/anomaly-map smoothMaps (same
 * taps); sigma 0 returns the map unchanged. Shared by every model kind's scoring graph.
 */
export function appendMapSmoothing(
  g: GraphBuilder,
  map: string,
  h: number,
  w: number,
  sigma: number,
): string {
  if (sigma <= 0) return map;
  const k = smoothingKernel(sigma, h, w);
  const radius = (k.length - 1) / 2;
  const padded = g.op(
    'Gather',
    [
      g.op('Gather', [map, g.ints64(symmetricPadIndices(h, radius))], [int('axis', 2)]),
      g.ints64(symmetricPadIndices(w, radius)),
    ],
    [int('axis', 3)],
  );
  return separableBlur(g, padded, 1, k, 'smooth', 0);
}

/**
 * Appends the map and score of NCHW image `x` and reconstruction `recon` ([N,C,H,W]) to `g`; returns
 * the names of the map [N,H,W] and the score [N] (given names when `outputs` is set).
 */
export function appendAnomalyMap(
  g: GraphBuilder,
  x: string,
  recon: string,
  shape: { c: number; h: number; w: number },
  cfg: AnomalyMapConfig,
  outputs: { map?: string; score?: string } = {},
): { map: string; score: string } {
  checkAnomalyMapConfig(cfg);
  const { c, h, w } = shape;
  const terms: string[] = [];
  if (cfg.mse_weight > 0) {
    const d = g.op('Sub', [x, recon]);
    terms.push(g.op('Mul', [channelMean(g, g.op('Mul', [d, d])), g.floats([cfg.mse_weight])]));
  }
  if (cfg.ssim_weight > 0) {
    const dissim = g.op('Sub', [g.floats([1]), channelMean(g, ssimNchw(g, x, recon, c))]);
    terms.push(g.op('Mul', [dissim, g.floats([cfg.ssim_weight])]));
  }
  const map = appendMapSmoothing(
    g,
    terms.length === 2 ? g.op('Add', terms) : terms[0],
    h,
    w,
    cfg.smoothing_sigma,
  );
  const mapOut = g.op('Reshape', [map, g.ints64([-1, h, w])], [], outputs.map);
  // The score ignores the outermost pixels (anomaly_map.score_border), as imageScoreTensor does.
  const b = scoreBorder(h, w, cfg);
  const ih = h - 2 * b.y;
  const iw = w - 2 * b.x;
  const inner =
    b.y || b.x
      ? g.op('Slice', [mapOut, g.ints64([b.y, b.x]), g.ints64([h - b.y, w - b.x]), g.ints64([1, 2])])
      : mapOut;
  const flat = g.op('Reshape', [inner, g.ints64([-1, ih * iw])]);
  let score: string;
  if (cfg.score === 'max') {
    score = g.op('ReduceMax', [flat], [ints('axes', [1]), int('keepdims', 0)], outputs.score);
  } else {
    // TopK has two outputs (values, indices), which GraphBuilder.op does not name: a node by hand.
    const values = 'anomaly_map/topk:values';
    g.nodes.push({
      op_type: 'TopK',
      name: 'anomaly_map/topk',
      input: [flat, g.ints64([Math.min(cfg.topk, ih * iw)])],
      output: [values, 'anomaly_map/topk:indices'],
      attribute: [int('axis', 1), int('largest', 1), int('sorted', 0)],
    });
    score = g.op('ReduceMean', [values], [ints('axes', [1]), int('keepdims', 0)], outputs.score);
  }
  return { map: mapOut, score };
}

/**
 * The ONNX model of `model` followed by its anomaly map and score for `cfg`: input 'image' NHWC,
 * outputs ONNX_MAP_OUTPUT [N,H,W] and ONNX_SCORE_OUTPUT [N]. The reconstruction is not an output.
 */
export function exportOnnxScorer(model: tf.LayersModel, cfg: AnomalyMapConfig): Uint8Array {
  const { graph, imageNchw, reconstructionNchw } = inferenceGraph(model);
  const [, h, w, c] = model.inputs[0].shape;
  if (h == null || w == null || c == null) throw new Error('exportOnnxScorer: input shape must be known');
  const g = new GraphBuilder();
  appendAnomalyMap(g, imageNchw, reconstructionNchw, { c, h, w }, cfg, {
    map: ONNX_MAP_OUTPUT,
    score: ONNX_SCORE_OUTPUT,
  });
  return encodeModel({
    ...graph,
    // The NHWC reconstruction output is not needed: drop its transpose.
    nodes: [...graph.nodes.filter((n) => !n.output.includes(ONNX_OUTPUT)), ...g.nodes],
    initializers: [...graph.initializers, ...g.initializers],
    outputs: [valueInfo(ONNX_MAP_OUTPUT, ['N', h, w]), valueInfo(ONNX_SCORE_OUTPUT, ['N'])],
  });
}

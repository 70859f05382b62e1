/**
 * The anomaly map and image score of lib/eval/anomaly-map (anomalyMapTensor + imageScoreTensor) as ONNX
 * nodes appended to the exported U-Net-lite graph (lib/models/autoencoder/export), so that one ONNX Runtime
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
import type { AnomalyMapConfig } from '../../config/schema';
import { checkAnomalyMapConfig, scoreBorder } from '../../model/anomaly-map-params';
import { gaussianKernel1d, SSIM_DEFAULTS } from '../../model/ssim';
import { appendMapSmoothing, separableBlur } from '../../onnx/blur';
import { GraphBuilder } from '../../onnx/graph';
import { encodeModel, int, ints, valueInfo } from '../../onnx/proto';
import { ssimFromMoments } from '../../onnx/ssim';
import { inferenceGraph, ONNX_OUTPUT } from './export';

export const ONNX_MAP_OUTPUT = 'anomaly_map';
export const ONNX_SCORE_OUTPUT = 'score';

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
export { appendMapSmoothing, symmetricPadIndices } from '../../onnx/blur';

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

/**
 * PatchCore's two ONNX graphs, built from the same feature nodes (feature-graph.ts):
 *   feature model  image NHWC [N,S,S,3] in [0,1]  ->  patches [N*g*g, dim]       (fitting the bank)
 *   scoring model  image NHWC [1,S,S,3]           ->  anomaly_map [1,S,S], score [1]
 * The scoring model holds the memory bank as initializers: squared distances to every bank patch are
 * one MatMul (|f|^2 - 2 f.b + |b|^2), the nearest-neighbour distance a ReduceMin; the patch-distance
 * grid is upsampled to the input size (bilinear) and Gaussian-smoothed into the map, and the image
 * score is the largest patch distance (the paper's score before reweighting).
 */
import { appendMapSmoothing } from '../../onnx/blur';
import { GraphBuilder } from '../../onnx/graph';
import { encodeModel, floatTensor, int, ints, str, valueInfo } from '../../onnx/proto';
import { DETECTOR_INPUT, DETECTOR_MAP, DETECTOR_SCORE } from '../onnx-detector';
import { type AppendBackbone, appendPatchFeatures, type PatchFeatures } from './feature-graph';

export const PATCHCORE_PATCHES = 'patches';

export interface PatchcoreGraphOptions {
  imageSize: number;
  backbone: AppendBackbone;
  strides: number[];
  neighbourhood: number;
  /** Stride of the patch grid (default: the finest stage's). */
  patchStride?: number;
}

function patchRows(g: GraphBuilder, o: PatchcoreGraphOptions): PatchFeatures & { rows: string } {
  const nchw = g.transpose(DETECTOR_INPUT, [0, 3, 1, 2]);
  const f = appendPatchFeatures(g, nchw, o.imageSize, o.backbone, o);
  // [N, dim, g, g] -> [N, g, g, dim] -> one row per patch, images in order, patches row-major.
  const rows = g.op('Reshape', [g.transpose(f.name, [0, 2, 3, 1]), g.ints64([-1, f.dim])]);
  return { ...f, rows };
}

/** The feature model, and the patch grid it produces. */
export function buildFeatureModel(o: PatchcoreGraphOptions): {
  bytes: Uint8Array;
  dim: number;
  grid: number;
} {
  const g = new GraphBuilder();
  const f = patchRows(g, o);
  g.op('Identity', [f.rows], [], PATCHCORE_PATCHES);
  const bytes = encodeModel({
    name: 'patchcore-features',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(DETECTOR_INPUT, ['N', o.imageSize, o.imageSize, 3])],
    outputs: [valueInfo(PATCHCORE_PATCHES, ['P', f.dim])],
  });
  return { bytes, dim: f.dim, grid: f.grid };
}

/** The scoring model for a fitted bank ([bankSize, dim], row-major). */
export function buildScoringModel(
  o: PatchcoreGraphOptions & { smoothingSigma: number },
  bank: Float32Array,
  bankSize: number,
): Uint8Array {
  const g = new GraphBuilder();
  const f = patchRows(g, o);
  if (bank.length !== bankSize * f.dim)
    throw new Error(`patchcore bank: ${bank.length} values is not ${bankSize} patches of ${f.dim}`);
  // -2 B^T and |b|^2 are constants: the per-patch work is one MatMul and two broadcast adds.
  const bankT = new Float32Array(f.dim * bankSize);
  const bankSq = new Float32Array(bankSize);
  for (let m = 0; m < bankSize; m++) {
    let sq = 0;
    for (let d = 0; d < f.dim; d++) {
      const v = bank[m * f.dim + d];
      bankT[d * bankSize + m] = -2 * v;
      sq += v * v;
    }
    bankSq[m] = sq;
  }
  g.initializers.push(floatTensor('patchcore/bank_t_neg2', [f.dim, bankSize], bankT));
  g.initializers.push(floatTensor('patchcore/bank_sq', [1, bankSize], bankSq));
  const fsq = g.op('ReduceSumSquare', [f.rows], [ints('axes', [1]), int('keepdims', 1)]);
  const d2 = g.op('Add', [
    g.op('Add', [g.op('MatMul', [f.rows, 'patchcore/bank_t_neg2']), fsq]),
    'patchcore/bank_sq',
  ]);
  const nearest = g.op('ReduceMin', [d2], [ints('axes', [1]), int('keepdims', 0)]);
  // Rounding can make a squared distance slightly negative: clamp before the square root.
  const dist = g.op('Sqrt', [g.op('Max', [nearest, g.floats([0])])]);
  const s = o.imageSize;
  const grid = g.op('Reshape', [dist, g.ints64([-1, 1, f.grid, f.grid])]);
  const up = g.op(
    'Resize',
    [grid, '', g.floats([1, 1, f.stride, f.stride])],
    [str('mode', 'linear'), str('coordinate_transformation_mode', 'half_pixel')],
  );
  const smooth = appendMapSmoothing(g, up, s, s, o.smoothingSigma);
  g.op('Reshape', [smooth, g.ints64([-1, s, s])], [], DETECTOR_MAP);
  g.op(
    'ReduceMax',
    [g.op('Reshape', [dist, g.ints64([-1, f.grid * f.grid])])],
    [ints('axes', [1]), int('keepdims', 0)],
    DETECTOR_SCORE,
  );
  return encodeModel({
    name: 'patchcore-scorer',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(DETECTOR_INPUT, ['N', s, s, 3])],
    outputs: [valueInfo(DETECTOR_MAP, ['N', s, s]), valueInfo(DETECTOR_SCORE, ['N'])],
  });
}

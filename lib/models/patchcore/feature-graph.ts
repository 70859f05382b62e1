/**
 * PatchCore's locally aware patch features as ONNX nodes: the backbone's stage outputs, each averaged
 * over its `neighbourhood` x `neighbourhood` neighbours (3x3 AveragePool, stride 1, zero padding
 * counted, as the paper's torch AvgPool2d(3, 1, 1)), the deeper stages upsampled (bilinear, torch's
 * half-pixel convention) to the grid of the finest one, and concatenated along channels.
 * The same nodes serve fitting (features of the good images) and scoring (distances to the bank), so
 * the two can never disagree.
 */
import type { GraphBuilder } from '../../onnx/graph';
import { int, ints, str } from '../../onnx/proto';

/** A backbone's contribution to a graph: one NCHW feature map per requested stage. */
export interface BackboneOutput {
  name: string;
  stride: number;
  channels: number;
}

/**
 * Appends a frozen feature extractor to `g`: input NCHW float32 RGB in [0,1] (the extractor applies
 * its own normalisation), one output per requested stride.
 */
export type AppendBackbone = (g: GraphBuilder, inputNchw: string, strides: number[]) => BackboneOutput[];

export interface PatchFeatures {
  /** [N, dim, grid, grid] */
  name: string;
  dim: number;
  /** Side of the patch grid (image size / finest stride). */
  grid: number;
  stride: number;
}

export function appendPatchFeatures(
  g: GraphBuilder,
  inputNchw: string,
  imageSize: number,
  backbone: AppendBackbone,
  opts: { strides: number[]; neighbourhood: number; patchStride?: number },
): PatchFeatures {
  const strides = [...new Set(opts.strides)].sort((a, b) => a - b);
  const outputs = backbone(g, inputNchw, strides);
  if (outputs.length !== strides.length)
    throw new Error(`backbone returned ${outputs.length} stages for strides ${strides.join(', ')}`);
  // The patch grid: the finest stage's by default; a finer stage than the grid is average-pooled
  // down to it (its local colour and contrast, without 4x the patches).
  const stride = opts.patchStride ?? strides[0];
  if (imageSize % strides[strides.length - 1] !== 0)
    throw new Error(`image size ${imageSize} is not a multiple of the coarsest stride ${strides.at(-1)}`);
  const grid = imageSize / stride;
  const k = opts.neighbourhood;
  const pooled = outputs.map((o) => {
    const p =
      k > 1
        ? g.op(
            'AveragePool',
            [o.name],
            [
              ints('kernel_shape', [k, k]),
              ints('strides', [1, 1]),
              ints('pads', [(k - 1) >> 1, (k - 1) >> 1, k >> 1, k >> 1]),
              int('count_include_pad', 1),
            ],
          )
        : o.name;
    if (o.stride === stride) return p;
    if (o.stride < stride) {
      const r = stride / o.stride;
      return g.op('AveragePool', [p], [ints('kernel_shape', [r, r]), ints('strides', [r, r])]);
    }
    return g.op(
      'Resize',
      [p, '', g.floats([1, 1, o.stride / stride, o.stride / stride])],
      [str('mode', 'linear'), str('coordinate_transformation_mode', 'half_pixel')],
    );
  });
  const name = pooled.length > 1 ? g.op('Concat', pooled, [int('axis', 1)]) : pooled[0];
  return { name, dim: outputs.reduce((s, o) => s + o.channels, 0), grid, stride };
}

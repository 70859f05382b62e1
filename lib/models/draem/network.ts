/**
 * The two U-Nets of the DRAEM-style detector (Zavrtanik et al., ICCV 2021) as ONNX nodes:
 *   reconstructive  image (3 ch) -> image without the anomaly (3 ch, sigmoid)
 *   discriminative  concat(input, reconstruction) (6 ch) -> anomaly logit (1 ch)
 * Each level: 3x3 conv + ReLU, then a stride-2 3x3 conv + ReLU down; a bottleneck conv; per level up:
 * nearest 2x upsampling, concat with the skip, 3x3 conv + ReLU; a 1x1 head. No batch norm, so training
 * and scoring compute the same function. Parameters are named `<net>/<layer>/{kernel,bias}` in ONNX
 * layout ([co,ci,k,k], [co]) and are graph inputs for training, initializers for scoring.
 */
import type { GraphBuilder } from '../../onnx/graph';
import { int, ints, str } from '../../onnx/proto';
import type { Rng } from '../../util/rng';

export type HeadActivation = 'sigmoid' | 'none';

export interface ConvSpec {
  /** `<net>/<layer>` */
  name: string;
  ci: number;
  co: number;
  k: number;
  stride: number;
  relu: boolean;
}

export interface UNetSpec {
  net: string;
  inChannels: number;
  outChannels: number;
  widths: number[];
  head: HeadActivation;
}

export const kernelOf = (layer: string) => `${layer}/kernel`;
export const biasOf = (layer: string) => `${layer}/bias`;

/** The conv layers of a U-Net, in creation order. */
export function unetLayers(spec: UNetSpec): ConvSpec[] {
  const out: ConvSpec[] = [];
  const conv = (layer: string, ci: number, co: number, stride = 1, k = 3, relu = true) =>
    out.push({ name: `${spec.net}/${layer}`, ci, co, k, stride, relu });
  let c = spec.inChannels;
  spec.widths.forEach((w, i) => {
    conv(`enc${i}`, c, w);
    conv(`down${i}`, w, w, 2);
    c = w;
  });
  const deepest = spec.widths[spec.widths.length - 1];
  conv('bottleneck', c, deepest);
  c = deepest;
  for (let i = spec.widths.length - 1; i >= 0; i--) {
    conv(`dec${i}`, c + spec.widths[i], spec.widths[i]);
    c = spec.widths[i];
  }
  conv('head', c, spec.outChannels, 1, 1, false);
  return out;
}

export function assertImageSize(size: number, widths: number[]): void {
  if (size % 2 ** widths.length !== 0)
    throw new Error(
      `draem: image size ${size} must be divisible by 2^${widths.length} (one halving per level)`,
    );
}

function conv(g: GraphBuilder, x: string, l: ConvSpec): string {
  const p = (l.k - 1) >> 1;
  const y = g.op(
    'Conv',
    [x, kernelOf(l.name), biasOf(l.name)],
    [ints('kernel_shape', [l.k, l.k]), ints('strides', [l.stride, l.stride]), ints('pads', [p, p, p, p])],
  );
  return l.relu ? g.op('Relu', [y]) : y;
}

/** Appends the U-Net to `g` on an NCHW input; returns its NCHW output. */
export function appendUNet(g: GraphBuilder, input: string, spec: UNetSpec): string {
  const layers = unetLayers(spec);
  const at = (layer: string) => layers.find((l) => l.name === `${spec.net}/${layer}`)!;
  let x = input;
  const skips: string[] = [];
  spec.widths.forEach((_, i) => {
    x = conv(g, x, at(`enc${i}`));
    skips.push(x);
    x = conv(g, x, at(`down${i}`));
  });
  x = conv(g, x, at('bottleneck'));
  for (let i = spec.widths.length - 1; i >= 0; i--) {
    const up = g.op(
      'Resize',
      [x, '', g.floats([1, 1, 2, 2])],
      [
        str('mode', 'nearest'),
        str('coordinate_transformation_mode', 'asymmetric'),
        str('nearest_mode', 'floor'),
      ],
    );
    x = conv(g, g.op('Concat', [up, skips[i]], [int('axis', 1)]), at(`dec${i}`));
  }
  x = conv(g, x, at('head'));
  return spec.head === 'sigmoid' ? g.op('Sigmoid', [x]) : x;
}

/** One parameter tensor: its graph name, shape and values. */
export interface ParamTensor {
  name: string;
  shape: number[];
  value: Float32Array;
}

/** He-normal kernels (ReLU layers; Glorot for the heads), zero biases: deterministic for the rng. */
export function initParams(layers: ConvSpec[], rng: Rng): ParamTensor[] {
  const out: ParamTensor[] = [];
  for (const l of layers) {
    const fanIn = l.ci * l.k * l.k;
    const std = l.relu ? Math.sqrt(2 / fanIn) : Math.sqrt(2 / (fanIn + l.co * l.k * l.k));
    const w = new Float32Array(l.co * fanIn);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal() * std;
    out.push({ name: kernelOf(l.name), shape: [l.co, l.ci, l.k, l.k], value: w });
    out.push({ name: biasOf(l.name), shape: [l.co], value: new Float32Array(l.co) });
  }
  return out;
}

/**
 * Gaussian blurs as ONNX nodes, shared by every scoring graph (the autoencoder's anomaly map and
 * SSIM, PatchCore's patch-distance map): separable grouped convolutions with scipy's mirror padding.
 */
import { smoothingKernel } from '../model/anomaly-map-params';
import type { GraphBuilder } from './graph';
import { floatTensor, int, ints } from './proto';

/**
 * Separable blur of every channel of [M,C,H,W] on its own: along W (first, as tfjs does), then along H,
 * as grouped convolutions (group = C; ONNX Runtime runs them several times faster than the same maps as
 * a batch of single-channel convolutions). `pad` zero-pads each side ('same'); 0 for inputs that are
 * already padded ('valid').
 */
export function separableBlur(
  g: GraphBuilder,
  x: string,
  c: number,
  k: number[],
  tag: string,
  pad: number,
): string {
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

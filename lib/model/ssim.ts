import * as tf from '@tensorflow/tfjs';

export interface SsimOptions {
  /** Gaussian window size (odd). */
  windowSize?: number;
  sigma?: number;
  /** Dynamic range of the images (1 for [0,1]). */
  maxVal?: number;
}

/** ssimMap's defaults (the anomaly map uses them; lib/models/autoencoder/anomaly-map-graph rebuilds the same SSIM). */
export const SSIM_DEFAULTS = { windowSize: 11, sigma: 1.5, maxVal: 1 } as const;

/** Normalised 1-D Gaussian window of `size` taps centred on (size-1)/2. */
export function gaussianKernel1d(size: number, sigma: number): number[] {
  const half = (size - 1) / 2;
  const k = Array.from({ length: size }, (_, i) => Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  return k.map((v) => v / sum);
}

/** A [kh, kw, c, c] filter applying the same 2-D kernel to each channel separately (zero across channels). */
export function perChannelFilter(k: number[], kh: number, kw: number, c: number): tf.Tensor4D {
  const v = new Float32Array(kh * kw * c * c);
  for (let t = 0; t < kh * kw; t++) for (let ch = 0; ch < c; ch++) v[(t * c + ch) * c + ch] = k[t];
  return tf.tensor4d(v, [kh, kw, c, c]);
}

/**
 * Separable Gaussian blur per channel, as plain conv2d with channel-diagonal filters (the wasm
 * backend has training kernels for conv2d but none for depthwise conv). Working in NHWC directly,
 * without folding channels into the batch, avoids two transposes per blur and per gradient: for the
 * few channels of an image the extra multiply-adds cost less than the copies, and a training step at
 * batch 32 holds ~100 MB less.
 */
function blur(x: tf.Tensor4D, k1d: number[]): tf.Tensor4D {
  return tf.tidy(() => {
    const c = x.shape[3];
    const size = k1d.length;
    const kx = perChannelFilter(k1d, 1, size, c);
    const ky = perChannelFilter(k1d, size, 1, c);
    return tf.conv2d(tf.conv2d(x, kx, 1, 'same'), ky, 1, 'same');
  });
}

/**
 * Per-pixel SSIM map [N,H,W,C] (Wang et al. 2004; Gaussian window 11x11, sigma 1.5 by default,
 * C1=(0.01L)^2, C2=(0.03L)^2), 'same' padding with zeros at the border.
 */
export function ssimMap(a: tf.Tensor4D, b: tf.Tensor4D, opts: SsimOptions = {}): tf.Tensor4D {
  const {
    windowSize = SSIM_DEFAULTS.windowSize,
    sigma = SSIM_DEFAULTS.sigma,
    maxVal = SSIM_DEFAULTS.maxVal,
  } = opts;
  const c1 = (0.01 * maxVal) ** 2;
  const c2 = (0.03 * maxVal) ** 2;
  const k = gaussianKernel1d(windowSize, sigma);
  return tf.tidy(() => {
    const muA = blur(a, k);
    const muB = blur(b, k);
    const muA2 = muA.square();
    const muB2 = muB.square();
    const muAB = muA.mul(muB);
    const sigA2 = blur(a.square(), k).sub(muA2);
    const sigB2 = blur(b.square(), k).sub(muB2);
    const sigAB = blur(a.mul(b), k).sub(muAB);
    const num = muAB.mul(2).add(c1).mul(sigAB.mul(2).add(c2));
    const den = muA2.add(muB2).add(c1).mul(sigA2.add(sigB2).add(c2));
    return num.div(den) as tf.Tensor4D;
  });
}

/** Mean SSIM per image, shape [N]. */
export function ssim(a: tf.Tensor4D, b: tf.Tensor4D, opts: SsimOptions = {}): tf.Tensor1D {
  return tf.tidy(() => ssimMap(a, b, opts).mean([1, 2, 3]) as tf.Tensor1D);
}

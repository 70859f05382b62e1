/** Deterministic random data for the ONNX-vs-tfjs comparisons (test/model-onnx, test/eval-onnx-anomaly-map). */
import * as tf from '@tensorflow/tfjs';

/** Deterministic uniform values in [lo, hi). */
export function rand(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((hi - lo) * s) / 2 ** 32;
  });
}

/**
 * Random biases in [-amplitude, amplitude) (the initializer zeroes them), so that a mis-mapped bias
 * cannot hide; layer i draws from seed + i.
 */
export function randomizeBiases(model: tf.LayersModel, seed = 100, amplitude = 0.2): void {
  model.layers.forEach((layer, li) => {
    const w = layer.getWeights();
    if (w.length !== 2) return;
    const bias = tf.tensor1d(rand(w[1].size, seed + li, -amplitude, amplitude));
    layer.setWeights([w[0], bias]);
    bias.dispose();
  });
}

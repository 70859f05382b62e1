import * as tf from '@tensorflow/tfjs';

export interface UNetLiteOptions {
  imageSize: number;
  /** Channel widths per encoder level, e.g. [16, 32, 64, 128] (the reference configuration). */
  widths: number[];
  seed?: number;
}

/**
 * U-Net-lite autoencoder, layer for layer the architecture of shared/bench/torch_reference.py
 * (NHWC here, NCHW there):
 *   encoder level i: conv3x3+ReLU to w[i] (the skip), conv3x3 stride 2+ReLU to w[i+1] (last keeps w[n-1]);
 *   bottleneck: conv3x3+ReLU; decoder (reverse): nearest upsample x2, concat skip, conv3x3+ReLU to w[i];
 *   head: conv1x1 to 3 channels + sigmoid. No normalisation layers.
 */
export function buildUNetLite(opts: UNetLiteOptions): tf.LayersModel {
  const { imageSize, widths } = opts;
  const levels = widths.length;
  if (imageSize % 2 ** levels !== 0) {
    throw new Error(`image size ${imageSize} must be divisible by 2^${levels} (one halving per width level)`);
  }
  let seed = opts.seed ?? 0;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  const conv = (
    filters: number,
    name: string,
    strides = 1,
    kernelSize = 3,
    activation: 'relu' | 'sigmoid' = 'relu',
  ) =>
    tf.layers.conv2d({
      filters,
      kernelSize,
      strides,
      padding: 'same',
      activation,
      kernelInitializer: init(),
      biasInitializer: 'zeros',
      name,
    });

  const input = tf.input({ shape: [imageSize, imageSize, 3], name: 'image' });
  let x: tf.SymbolicTensor = input;
  const skips: tf.SymbolicTensor[] = [];
  widths.forEach((w, i) => {
    x = conv(w, `enc${i}_conv`).apply(x) as tf.SymbolicTensor;
    skips.push(x);
    const next = i + 1 < levels ? widths[i + 1] : w;
    x = conv(next, `enc${i}_down`, 2).apply(x) as tf.SymbolicTensor;
  });
  x = conv(widths[levels - 1], 'bottleneck').apply(x) as tf.SymbolicTensor;
  for (let i = levels - 1; i >= 0; i--) {
    const up = tf.layers.upSampling2d({ size: [2, 2], name: `dec${i}_up` }).apply(x) as tf.SymbolicTensor;
    const cat = tf.layers
      .concatenate({ axis: -1, name: `dec${i}_cat` })
      .apply([up, skips[i]]) as tf.SymbolicTensor;
    x = conv(widths[i], `dec${i}_conv`).apply(cat) as tf.SymbolicTensor;
  }
  const output = conv(3, 'head', 1, 1, 'sigmoid').apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output, name: 'unet_lite' });
}

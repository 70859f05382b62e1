/**
 * The U-Net-lite forward pass used for TRAINING: numerically the same function as
 * `model.apply(x)` on a `buildUNetLite` model, but each conv+bias+activation runs as ONE fused kernel
 * with a hand-written gradient.
 *
 * Why: under a gradient tape tfjs un-fuses conv2d+bias+relu into three kernels and keeps all three
 * outputs alive until the backward pass. At 128x128, batch 32 that alone pushed a training process
 * past 2.8 GB RSS; the fused form keeps one activation per layer and skips two elementwise passes.
 * Inference keeps using the plain layers model (already fused there).
 */
import * as tf from '@tensorflow/tfjs';

type Activation = 'relu' | 'sigmoid';

interface ConvParams {
  kernel: tf.Variable;
  bias: tf.Variable;
  strides: number;
  activation: Activation;
}

function convParams(
  model: tf.LayersModel,
  name: string,
  strides: number,
  activation: Activation,
): ConvParams {
  const layer = model.getLayer(name);
  const [kernel, bias] = layer.weights.map((w) => w.read() as tf.Variable);
  if (!kernel || !bias) throw new Error(`layer ${name}: expected a kernel and a bias`);
  return { kernel, bias, strides, activation };
}

function fusedKernel(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, p: ConvParams): tf.Tensor4D {
  return tf.engine().runKernel(
    'FusedConv2D',
    { x, filter: w, bias: b },
    {
      strides: [p.strides, p.strides],
      pad: 'same',
      dataFormat: 'NHWC',
      dilations: [1, 1],
      activation: p.activation,
      leakyreluAlpha: 0,
    },
  ) as tf.Tensor4D;
}

/** y = act(conv(x, w) + b) as one FusedConv2D kernel; gradients for x, w and b. */
/** `inputGrad` false: the input is the image batch, whose gradient nobody reads (zeros, no conv). */
function fusedConv(x: tf.Tensor4D, p: ConvParams, inputGrad = true): tf.Tensor4D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, w, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const y = fusedKernel(xi, w, b, p);
    save([xi, w, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw, sy] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
        const dz = p.activation === 'relu' ? tf.mul(dy, tf.step(sy)) : tf.mul(dy, tf.mul(sy, tf.sub(1, sy))); // sigmoid' = y (1 - y)
        return [
          inputGrad
            ? tf.conv2dTranspose(dz as tf.Tensor4D, sw, sx.shape, p.strides, 'same')
            : tf.zerosLike(sx),
          backpropFilter(sx, dz as tf.Tensor4D, sw.shape, p.strides),
          tf.sum(dz, [0, 1, 2]),
        ];
      },
    };
  });
  return f(x, p.kernel, p.bias) as tf.Tensor4D;
}

function backpropFilter(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: number[],
  strides: number,
): tf.Tensor4D {
  return tf.engine().runKernel(
    'Conv2DBackpropFilter',
    { x, dy },
    {
      strides: [strides, strides],
      pad: 'same',
      dataFormat: 'NHWC',
      filterShape,
    },
  ) as tf.Tensor4D;
}

const RESIZE_ATTRS = { alignCorners: false, halfPixelCenters: false };

function upConcat(h: tf.Tensor4D, skip: tf.Tensor4D): tf.Tensor4D {
  const [, hh, ww] = h.shape;
  return tf.concat([tf.image.resizeNearestNeighbor(h, [hh * 2, ww * 2]), skip], 3);
}

/**
 * A decoder block, y = relu(conv(concat(upsample2x(h), skip)) + b), as one op: the upsampled and
 * concatenated tensors (the largest of the network) are freed right after the forward and recomputed
 * in the backward pass, instead of living until the end of backpropagation.
 */
function decoderBlock(h: tf.Tensor4D, skip: tf.Tensor4D, p: ConvParams): tf.Tensor4D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [hi, si, w, b] = args as tf.Tensor4D[];
    const save = args[4] as tf.GradSaveFunc;
    const y = tf.tidy(() => fusedKernel(upConcat(hi, si), w, b, p));
    save([hi, si, w, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sh, ss, sw, sy] = saved as tf.Tensor4D[];
        const dz = tf.mul(dy, tf.step(sy)) as tf.Tensor4D;
        const cat = upConcat(sh, ss);
        const dcat = tf.conv2dTranspose(dz, sw, cat.shape, p.strides, 'same');
        const [dup, dskip] = tf.split(dcat, [sh.shape[3], ss.shape[3]], 3);
        const dh = tf
          .engine()
          .runKernel('ResizeNearestNeighborGrad', { images: sh, dy: dup }, RESIZE_ATTRS) as tf.Tensor;
        return [dh, dskip, backpropFilter(cat, dz, sw.shape, p.strides), tf.sum(dz, [0, 1, 2])];
      },
    };
  });
  return f(h, skip, p.kernel, p.bias) as tf.Tensor4D;
}

/** The training forward pass of a `buildUNetLite` model with `levels` width levels. */
export function unetTrainForward(model: tf.LayersModel, x: tf.Tensor4D, levels: number): tf.Tensor4D {
  let h = x;
  const skips: tf.Tensor4D[] = [];
  for (let i = 0; i < levels; i++) {
    h = fusedConv(h, convParams(model, `enc${i}_conv`, 1, 'relu'), i > 0);
    skips.push(h);
    h = fusedConv(h, convParams(model, `enc${i}_down`, 2, 'relu'));
  }
  h = fusedConv(h, convParams(model, 'bottleneck', 1, 'relu'));
  for (let i = levels - 1; i >= 0; i--) {
    h = decoderBlock(h, skips[i], convParams(model, `dec${i}_conv`, 1, 'relu'));
  }
  return fusedConv(h, convParams(model, 'head', 1, 'sigmoid'));
}

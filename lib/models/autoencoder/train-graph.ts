/**
 * The U-Net-lite training step as two ONNX graphs, so that ONNX Runtime's native CPU kernels (MLAS:
 * AVX2/AVX-512 FMA, multi-threaded) run the forward AND backward pass where tfjs in Node has only
 * single-threaded wasm SIMD128.
 *
 *   forward:  image NHWC + parameters  ->  reconstruction NHWC + every conv layer's output (NCHW)
 *   backward: image + those outputs + dLoss/dReconstruction + kernels  ->  gradient of every parameter
 *
 * The loss and its gradient w.r.t. the reconstruction come from a third graph (lib/models/autoencoder/loss-graph),
 * or from tfjs for a user's perceptual model; the optimizer runs in JS (lib/train/onnx-train-engine).
 * Parameters are graph INPUTS in tfjs layout ([kh,kw,ci,co] kernels, [co] biases), so one session serves
 * every step and gradients come back in the layout tfjs stores.
 *
 * The backward pass is written out by hand for the layers of buildUNetLite (lib/models/autoencoder/unet.ts):
 *   conv+bias+act:  dPre = dY * act'(Y);  dB = sum over N,H,W;
 *                   dX = ConvTranspose(dPre, W) with the forward's strides and pads;
 *                   dW = Conv(x as [ci,N,H,W], dPre as [co,N,Ho,Wo], dilation = stride) -> [ci,co,kh,kw]
 *   nearest 2x upsample:  gradient = 2x2 sum pooling;   concat: split the gradient by channels.
 * test/model-onnx-train.test.ts checks every gradient against tfjs' autodiff of the same model.
 */

import { GraphBuilder } from '../../onnx/graph';
import { encodeModel, int, ints, str, valueInfo } from '../../onnx/proto';
import { tfSamePads } from './export';

export const TRAIN_INPUT = 'image';
export const TRAIN_OUTPUT = 'reconstruction';
/** Backward-graph input: dLoss/dReconstruction, NHWC like the reconstruction. */
export const TRAIN_OUTPUT_GRAD = 'grad/reconstruction';

export type Activation = 'relu' | 'sigmoid';

/** One conv+bias+activation layer of the U-Net-lite, in the order buildUNetLite creates them. */
export interface ConvLayerSpec {
  name: string;
  ci: number;
  co: number;
  k: number;
  stride: number;
  act: Activation;
  /** Spatial size of the layer's input and output (square). */
  inSize: number;
  outSize: number;
}

/** The conv layers of buildUNetLite({ imageSize, widths }), with the same names. */
export function unetConvLayers(imageSize: number, widths: number[]): ConvLayerSpec[] {
  const levels = widths.length;
  if (imageSize % 2 ** levels !== 0)
    throw new Error(`image size ${imageSize} must be divisible by 2^${levels} (one halving per width level)`);
  const layers: ConvLayerSpec[] = [];
  const conv = (
    name: string,
    ci: number,
    co: number,
    inSize: number,
    stride = 1,
    k = 3,
    act: Activation = 'relu',
  ) => layers.push({ name, ci, co, k, stride, act, inSize, outSize: inSize / stride });
  let c = 3;
  let size = imageSize;
  widths.forEach((w, i) => {
    conv(`enc${i}_conv`, c, w, size);
    const next = i + 1 < levels ? widths[i + 1] : w;
    conv(`enc${i}_down`, w, next, size, 2);
    c = next;
    size /= 2;
  });
  conv('bottleneck', c, widths[levels - 1], size);
  c = widths[levels - 1];
  for (let i = levels - 1; i >= 0; i--) {
    size *= 2;
    conv(`dec${i}_conv`, c + widths[i], widths[i], size);
    c = widths[i];
  }
  conv('head', c, 3, size, 1, 1, 'sigmoid');
  return layers;
}

export const kernelName = (layer: string) => `${layer}/kernel`;
export const biasName = (layer: string) => `${layer}/bias`;
export const activationName = (layer: string) => `act/${layer}`;
export const gradName = (param: string) => `grad/${param}`;

function convPads(l: ConvLayerSpec): number[] {
  if (l.k === 1) return [0, 0, 0, 0];
  const [t, b] = tfSamePads(l.inSize, l.k, l.stride);
  return [t, t, b, b];
}

/** tfjs [kh,kw,ci,co] kernel -> ONNX [co,ci,kh,kw]. */
function onnxKernel(g: GraphBuilder, l: ConvLayerSpec): string {
  return g.transpose(kernelName(l.name), [3, 2, 0, 1]);
}

function upsample2x(g: GraphBuilder, x: string): string {
  // tfjs upSampling2d = nearest, source index floor(dst / 2): ONNX 'asymmetric' + 'floor'.
  return g.op(
    'Resize',
    [x, '', g.floats([1, 1, 2, 2])],
    [
      str('mode', 'nearest'),
      str('coordinate_transformation_mode', 'asymmetric'),
      str('nearest_mode', 'floor'),
    ],
  );
}

function paramInputs(layers: ConvLayerSpec[], withBias: boolean) {
  const inputs = [];
  for (const l of layers) {
    inputs.push(valueInfo(kernelName(l.name), [l.k, l.k, l.ci, l.co]));
    if (withBias) inputs.push(valueInfo(biasName(l.name), [l.co]));
  }
  return inputs;
}

/**
 * The input of each conv layer, rebuilt from the image and the conv outputs: the image (NCHW) for
 * enc0_conv, the previous conv's output in the encoder, upsample + concat with the skip in the decoder.
 */
function layerInputs(
  g: GraphBuilder,
  layers: ConvLayerSpec[],
  imageNchw: string,
  outputs: Map<string, string>,
) {
  const levels = layers.filter((l) => l.name.endsWith('_down')).length;
  return (l: ConvLayerSpec): string => {
    const out = (name: string) => {
      const v = outputs.get(name);
      if (!v) throw new Error(`onnx training graph: output of ${name} needed before it exists`);
      return v;
    };
    const m = /^(enc|dec)(\d+)_(conv|down)$/.exec(l.name);
    if (l.name === 'bottleneck') return out(`enc${levels - 1}_down`);
    if (l.name === 'head') return out('dec0_conv');
    if (!m) throw new Error(`onnx training graph: unexpected layer ${l.name}`);
    const i = Number(m[2]);
    if (m[1] === 'enc')
      return m[3] === 'down' ? out(`enc${i}_conv`) : i === 0 ? imageNchw : out(`enc${i - 1}_down`);
    const below = i === levels - 1 ? out('bottleneck') : out(`dec${i + 1}_conv`);
    return g.op('Concat', [upsample2x(g, below), out(`enc${i}_conv`)], [int('axis', 1)]);
  };
}

/**
 * dW[a,b,ci,co] = sum over n, p of x_pad[n, ci, p*s + (a,b)] * dPre[n, co, p]: one batched GEMM per
 * kernel tap (K = output pixels, batch = N), summed over the batch. Same FLOPs as the forward conv.
 * Stride 1: the padded input is flattened per channel, so a tap is a CONTIGUOUS window at offset
 * a*Wp + b (a memcpy, not a strided gather); the Wp - W columns that wrap around are multiplied by
 * zero columns padded onto dPre. Where co < ci, dPre is shifted instead (the smaller copy).
 * Stride 2: a strided slice per tap.
 */
function weightGradient(g: GraphBuilder, l: ConvLayerSpec, x: string, dPre: string, output: string): void {
  const [pt, pl, pb, pr] = convPads(l);
  const o = l.outSize;
  const taps: string[] = [];
  if (l.k === 1 && l.stride === 1) {
    const cols = g.op('Reshape', [x, g.ints64([0, l.ci, o * o])]);
    const dPreT = g.transpose(g.op('Reshape', [dPre, g.ints64([0, l.co, o * o])]), [0, 2, 1]);
    taps.push(g.op('MatMul', [cols, dPreT]));
  } else if (l.stride === 1) {
    const wp = l.inSize + pl + pr;
    const len = o * wp;
    // One extra bottom row keeps the last tap's window inside the buffer.
    const flat = g.op('Reshape', [
      g.op('Pad', [x, g.ints64([0, 0, pt, pl, 0, 0, pb + 1, pr])]),
      g.ints64([0, l.ci, (l.inSize + pt + pb + 1) * wp]),
    ]);
    const dPreWide = wp > o ? g.op('Pad', [dPre, g.ints64([0, 0, 0, 0, 0, 0, 0, wp - o])]) : dPre;
    const dPreFlat = g.op('Reshape', [dPreWide, g.ints64([0, l.co, len])]);
    const flatLen = (l.inSize + pt + pb + 1) * wp;
    for (let a = 0; a < l.k; a++)
      for (let b = 0; b < l.k; b++) {
        const off = a * wp + b;
        if (l.co < l.ci) {
          // Fewer output than input channels (the decoder convs after a concat): copy the smaller
          // operand per tap instead, dPre shifted by +off with zeros around, against all of x.
          const shifted = g.op('Pad', [dPreFlat, g.ints64([0, 0, off, 0, 0, flatLen - off - len])]);
          taps.push(g.op('MatMul', [flat, g.transpose(shifted, [0, 2, 1])])); // [N, ci, co]
        } else {
          const cols = g.op('Slice', [flat, g.ints64([off]), g.ints64([off + len]), g.ints64([2])]);
          // [N, co, Ho*Wp] -> [N, Ho*Wp, co]; ORT folds the transpose into the MatMul (transB).
          taps.push(g.op('MatMul', [cols, g.transpose(dPreFlat, [0, 2, 1])]));
        }
      }
  } else {
    const xp = g.op('Pad', [x, g.ints64([0, 0, pt, pl, 0, 0, pb, pr])]);
    const dPreT = g.transpose(g.op('Reshape', [dPre, g.ints64([0, l.co, o * o])]), [0, 2, 1]);
    const end = (start: number) => start + l.stride * (o - 1) + 1;
    for (let a = 0; a < l.k; a++)
      for (let b = 0; b < l.k; b++) {
        const slice = g.op('Slice', [
          xp,
          g.ints64([a, b]),
          g.ints64([end(a), end(b)]),
          g.ints64([2, 3]),
          g.ints64([l.stride, l.stride]),
        ]);
        const cols = g.op('Reshape', [slice, g.ints64([0, l.ci, o * o])]);
        taps.push(g.op('MatMul', [cols, dPreT]));
      }
  }
  const stacked = taps.length === 1 ? taps[0] : g.op('Concat', taps, [int('axis', 1)]); // [N, k*k*ci, co]
  const summed = g.op('ReduceSum', [stacked, g.ints64([0])], [int('keepdims', 0)]);
  g.op('Reshape', [summed, g.ints64([l.k, l.k, l.ci, l.co])], [], output);
}

/**
 * dX of a conv layer. Stride 1: a plain convolution of dPre with the spatially flipped, in/out
 * transposed kernel (a GEMM with K = co*k*k; ConvTranspose's GEMM has K = co, which is slow for the
 * narrow layers). Stride 2: ConvTranspose with the forward's strides and pads.
 */
function inputGradient(g: GraphBuilder, l: ConvLayerSpec, dPre: string): string {
  const pads = convPads(l);
  if (l.stride === 1) {
    const flipped = g.op('Slice', [
      kernelName(l.name),
      g.ints64([l.k - 1, l.k - 1]),
      g.ints64([-l.k - 1, -l.k - 1]),
      g.ints64([0, 1]),
      g.ints64([-1, -1]),
    ]);
    return g.op(
      'Conv',
      [dPre, g.transpose(flipped, [2, 3, 0, 1])], // [kh,kw,ci,co] -> [ci,co,kh,kw]
      [
        ints('kernel_shape', [l.k, l.k]),
        ints('pads', [l.k - 1 - pads[0], l.k - 1 - pads[1], l.k - 1 - pads[2], l.k - 1 - pads[3]]),
      ],
    );
  }
  const outputPadding = l.inSize - l.stride * (l.outSize - 1) - l.k + pads[0] + pads[2];
  return g.op(
    'ConvTranspose',
    [dPre, onnxKernel(g, l)],
    [
      ints('kernel_shape', [l.k, l.k]),
      ints('strides', [l.stride, l.stride]),
      ints('pads', pads),
      ints('output_padding', [outputPadding, outputPadding]),
    ],
  );
}

/** Forward graph: image + parameters -> reconstruction (NHWC) and each conv output (NCHW). */
export function buildForwardGraph(imageSize: number, widths: number[]): Uint8Array {
  const layers = unetConvLayers(imageSize, widths);
  const g = new GraphBuilder();
  buildForwardNodes(g, imageSize, widths);
  return encodeModel({
    name: 'unet_lite_train_forward',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(TRAIN_INPUT, ['N', imageSize, imageSize, 3]), ...paramInputs(layers, true)],
    outputs: [
      valueInfo(TRAIN_OUTPUT, ['N', imageSize, imageSize, 3]),
      ...layers.map((l) => valueInfo(activationName(l.name), ['N', l.co, l.outSize, l.outSize])),
    ],
  });
}

/** The forward graph's nodes, appended to `g` (also what lib/models/autoencoder/autodiff-unet differentiates). */
export function buildForwardNodes(g: GraphBuilder, imageSize: number, widths: number[]): void {
  const layers = unetConvLayers(imageSize, widths);
  const image = g.transpose(TRAIN_INPUT, [0, 3, 1, 2]);
  const outputs = new Map<string, string>();
  const inputOf = layerInputs(g, layers, image, outputs);
  for (const l of layers) {
    const pre = g.op(
      'Conv',
      [inputOf(l), onnxKernel(g, l), biasName(l.name)],
      [ints('kernel_shape', [l.k, l.k]), ints('strides', [l.stride, l.stride]), ints('pads', convPads(l))],
    );
    const y = g.op(l.act === 'relu' ? 'Relu' : 'Sigmoid', [pre], [], activationName(l.name));
    outputs.set(l.name, y);
  }
  g.transpose(activationName('head'), [0, 2, 3, 1], TRAIN_OUTPUT);
}

/** Backward graph: image, conv outputs, dLoss/dReconstruction and kernels -> every parameter's gradient. */
export function buildBackwardGraph(imageSize: number, widths: number[]): Uint8Array {
  const layers = unetConvLayers(imageSize, widths);
  const levels = widths.length;
  const g = new GraphBuilder();
  const image = g.transpose(TRAIN_INPUT, [0, 3, 1, 2]);
  const outputs = new Map(layers.map((l) => [l.name, activationName(l.name)]));
  const inputOf = layerInputs(g, layers, image, outputs);
  // Gradient contributions w.r.t. each conv layer's output, summed when the layer is reached.
  const pending = new Map<string, string[]>();
  const addGrad = (layer: string, grad: string) => pending.set(layer, [...(pending.get(layer) ?? []), grad]);
  addGrad('head', g.transpose(TRAIN_OUTPUT_GRAD, [0, 3, 1, 2]));
  const one = g.floats([1]);
  const gradOutputs: string[] = [];

  for (const l of [...layers].reverse()) {
    const parts = pending.get(l.name);
    if (!parts) throw new Error(`onnx training graph: no gradient reaches ${l.name}`);
    const dy = parts.length === 1 ? parts[0] : g.op('Sum', parts);
    const y = activationName(l.name);
    const dPre =
      l.act === 'relu'
        ? g.op('Mul', [dy, g.op('Sign', [y])]) // y >= 0, so sign(y) is the ReLU mask
        : g.op('Mul', [dy, g.op('Mul', [y, g.op('Sub', [one, y])])]);
    g.op('ReduceSum', [dPre, g.ints64([0, 2, 3])], [int('keepdims', 0)], gradName(biasName(l.name)));
    gradOutputs.push(biasName(l.name));

    weightGradient(g, l, inputOf(l), dPre, gradName(kernelName(l.name)));
    gradOutputs.push(kernelName(l.name));

    if (l.name === 'enc0_conv') continue; // the image's gradient is not needed
    const dx = inputGradient(g, l, dPre);
    const m = /^(enc|dec)(\d+)_(conv|down)$/.exec(l.name);
    if (l.name === 'head') addGrad('dec0_conv', dx);
    else if (l.name === 'bottleneck') addGrad(`enc${levels - 1}_down`, dx);
    else if (m?.[1] === 'enc')
      addGrad(m[3] === 'down' ? `enc${m[2]}_conv` : `enc${Number(m[2]) - 1}_down`, dx);
    else if (m?.[1] === 'dec') {
      const i = Number(m[2]);
      const upChannels = l.ci - widths[i];
      const dUp = `${dx}:up`;
      const dSkip = `${dx}:skip`;
      g.nodes.push({
        op_type: 'Split',
        name: `Split_${l.name}`,
        input: [dx, g.ints64([upChannels, widths[i]])],
        output: [dUp, dSkip],
        attribute: [int('axis', 1)],
      });
      addGrad(`enc${i}_conv`, dSkip);
      // Nearest 2x upsampling copies each pixel to a 2x2 block: its gradient sums the block.
      const pooled = g.op('AveragePool', [dUp], [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]);
      addGrad(i === levels - 1 ? 'bottleneck' : `dec${i + 1}_conv`, g.op('Mul', [pooled, g.floats([4])]));
    }
  }

  return encodeModel({
    name: 'unet_lite_train_backward',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [
      valueInfo(TRAIN_INPUT, ['N', imageSize, imageSize, 3]),
      valueInfo(TRAIN_OUTPUT_GRAD, ['N', imageSize, imageSize, 3]),
      ...layers.map((l) => valueInfo(activationName(l.name), ['N', l.co, l.outSize, l.outSize])),
      ...paramInputs(layers, false),
    ],
    outputs: layers.flatMap((l) => [
      valueInfo(gradName(kernelName(l.name)), [l.k, l.k, l.ci, l.co]),
      valueInfo(gradName(biasName(l.name)), [l.co]),
    ]),
  });
}

import type * as tf from '@tensorflow/tfjs';
import {
  encodeModel,
  floatTensor,
  int,
  ints,
  type OnnxGraph,
  type OnnxNode,
  type OnnxTensor,
  str,
  valueInfo,
} from '../../onnx/proto';

export const ONNX_INPUT = 'image';
export const ONNX_OUTPUT = 'reconstruction';

/**
 * Export of a U-Net-lite tf.LayersModel (lib/models/autoencoder/unet.ts) to an ONNX ModelProto, so that ONNX Runtime
 * can run inference (multi-threaded, AVX2/FMA kernels) where tfjs has only single-threaded wasm.
 * The graph takes and returns NHWC like the tfjs model; it transposes to NCHW (ONNX's layout) inside.
 * Supported layers: InputLayer, Conv2D (any activation of relu/sigmoid/linear, 'same'/'valid'),
 * UpSampling2D (nearest), Concatenate (channel axis). Anything else throws.
 */

/**
 * TF 'same' padding along one axis: out = ceil(in / stride), total = max((out-1)*stride + k - in, 0),
 * the smaller half before (so stride 2 on an even size pads 0 before and 1 after).
 */
export function tfSamePads(inSize: number, k: number, stride: number): [number, number] {
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + k - inSize, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

interface LayerLike {
  name: string;
  getClassName(): string;
  getConfig(): tf.serialization.ConfigDict;
  getWeights(): tf.Tensor[];
  inboundNodes: { inboundLayers: LayerLike[] }[];
}

/** Spatial size and channels of a layer's (single) output, NCHW name of the tensor holding it. */
interface Value {
  name: string;
  h: number;
  w: number;
  c: number;
}

/**
 * Builds the ONNX graph of `model` from its layers and current weights. Input/output: NHWC float32,
 * batch dimension symbolic ('N'), spatial size fixed to the model's.
 */
export function exportOnnxModel(model: tf.LayersModel): Uint8Array {
  return encodeModel(inferenceGraph(model).graph);
}

/**
 * The graph of exportOnnxModel, unencoded, with the NCHW names of the image and the reconstruction so
 * that more nodes can be appended (lib/models/autoencoder/anomaly-map-graph).
 */
export function inferenceGraph(model: tf.LayersModel): {
  graph: OnnxGraph;
  imageNchw: string;
  reconstructionNchw: string;
} {
  if (model.inputs.length !== 1 || model.outputs.length !== 1)
    throw new Error('exportOnnxModel: the model must have exactly one input and one output');
  const [, inH, inW, inC] = model.inputs[0].shape;
  if (inH == null || inW == null || inC == null)
    throw new Error(
      `exportOnnxModel: input shape ${JSON.stringify(model.inputs[0].shape)} must be fully known`,
    );

  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const values = new Map<string, Value>();
  let outLayer = '';
  let imageNchw = '';

  for (const layer of model.layers as unknown as LayerLike[]) {
    const cls = layer.getClassName();
    const cfg = layer.getConfig();
    const inbound = layer.inboundNodes[0]?.inboundLayers ?? [];
    const ins = inbound.map((l) => {
      const v = values.get(l.name);
      if (!v) throw new Error(`exportOnnxModel: layer ${layer.name}: input ${l.name} not exported yet`);
      return v;
    });
    const out = `${layer.name}:out`;
    if (cls === 'InputLayer') {
      nodes.push({
        op_type: 'Transpose',
        name: `${layer.name}_to_nchw`,
        input: [ONNX_INPUT],
        output: [out],
        attribute: [ints('perm', [0, 3, 1, 2])],
      });
      values.set(layer.name, { name: out, h: inH, w: inW, c: inC });
      imageNchw = out;
    } else if (cls === 'Conv2D') {
      const [x] = ins;
      const st = cfg.strides as number[];
      const dil = (cfg.dilationRate as number[] | number | undefined) ?? 1;
      const dilations = Array.isArray(dil) ? dil : [dil, dil];
      if (dilations.some((d) => d !== 1))
        throw new Error(`exportOnnxModel: ${layer.name}: dilation unsupported`);
      if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast')
        throw new Error(`exportOnnxModel: ${layer.name}: dataFormat ${String(cfg.dataFormat)} unsupported`);
      const [kernel, bias] = layer.getWeights();
      const [kh, kw, ci, co] = kernel.shape;
      if (ci !== x.c)
        throw new Error(`exportOnnxModel: ${layer.name}: kernel has ${ci} inputs, tensor ${x.c}`);
      // tfjs kernel [kh, kw, ci, co] -> ONNX [co, ci, kh, kw].
      const k = kernel.dataSync() as Float32Array;
      const w = new Float32Array(k.length);
      for (let a = 0; a < kh; a++)
        for (let b = 0; b < kw; b++)
          for (let i = 0; i < ci; i++)
            for (let o = 0; o < co; o++)
              w[((o * ci + i) * kh + a) * kw + b] = k[((a * kw + b) * ci + i) * co + o];
      initializers.push(floatTensor(`${layer.name}.weight`, [co, ci, kh, kw], w));
      const inputs = [x.name, `${layer.name}.weight`];
      if (bias) {
        initializers.push(floatTensor(`${layer.name}.bias`, [co], bias.dataSync() as Float32Array));
        inputs.push(`${layer.name}.bias`);
      }
      let pads: number[];
      let oh: number;
      let ow: number;
      if (cfg.padding === 'same') {
        const [t, bo] = tfSamePads(x.h, kh, st[0]);
        const [l, r] = tfSamePads(x.w, kw, st[1]);
        pads = [t, l, bo, r];
        oh = Math.ceil(x.h / st[0]);
        ow = Math.ceil(x.w / st[1]);
      } else if (cfg.padding === 'valid') {
        pads = [0, 0, 0, 0];
        oh = Math.floor((x.h - kh) / st[0]) + 1;
        ow = Math.floor((x.w - kw) / st[1]) + 1;
      } else throw new Error(`exportOnnxModel: ${layer.name}: padding ${String(cfg.padding)} unsupported`);
      const act = (cfg.activation as string | undefined) ?? 'linear';
      const convOut = act === 'linear' ? out : `${layer.name}:conv`;
      nodes.push({
        op_type: 'Conv',
        name: layer.name,
        input: inputs,
        output: [convOut],
        attribute: [
          ints('kernel_shape', [kh, kw]),
          ints('strides', st),
          ints('pads', pads),
          ints('dilations', [1, 1]),
          int('group', 1),
        ],
      });
      if (act === 'relu' || act === 'sigmoid')
        nodes.push({
          op_type: act === 'relu' ? 'Relu' : 'Sigmoid',
          name: `${layer.name}_${act}`,
          input: [convOut],
          output: [out],
        });
      else if (act !== 'linear')
        throw new Error(`exportOnnxModel: ${layer.name}: activation ${act} unsupported`);
      values.set(layer.name, { name: out, h: oh, w: ow, c: co });
    } else if (cls === 'UpSampling2D') {
      const [x] = ins;
      const size = cfg.size as number[];
      if ((cfg.interpolation ?? 'nearest') !== 'nearest')
        throw new Error(
          `exportOnnxModel: ${layer.name}: interpolation ${String(cfg.interpolation)} unsupported`,
        );
      const scales = `${layer.name}.scales`;
      initializers.push(floatTensor(scales, [4], new Float32Array([1, 1, size[0], size[1]])));
      // tfjs upSampling2d = resizeNearestNeighbor(alignCorners=false, halfPixelCenters=false):
      // source index floor(dst / scale), i.e. ONNX 'asymmetric' + 'floor'.
      nodes.push({
        op_type: 'Resize',
        name: layer.name,
        input: [x.name, '', scales],
        output: [out],
        attribute: [
          str('mode', 'nearest'),
          str('coordinate_transformation_mode', 'asymmetric'),
          str('nearest_mode', 'floor'),
        ],
      });
      values.set(layer.name, { name: out, h: x.h * size[0], w: x.w * size[1], c: x.c });
    } else if (cls === 'Concatenate') {
      const axis = (cfg.axis as number | undefined) ?? -1;
      if (axis !== -1 && axis !== 3)
        throw new Error(`exportOnnxModel: ${layer.name}: concat axis ${axis} unsupported`);
      nodes.push({
        op_type: 'Concat',
        name: layer.name,
        input: ins.map((v) => v.name),
        output: [out],
        attribute: [int('axis', 1)],
      });
      values.set(layer.name, { name: out, h: ins[0].h, w: ins[0].w, c: ins.reduce((s, v) => s + v.c, 0) });
    } else {
      throw new Error(`exportOnnxModel: layer ${layer.name} (${cls}) is not supported`);
    }
    outLayer = layer.name;
  }
  const outputLayer = (model.outputs[0] as unknown as { sourceLayer: LayerLike }).sourceLayer.name;
  const last = values.get(outputLayer) ?? values.get(outLayer);
  if (!last) throw new Error('exportOnnxModel: model output not found');
  nodes.push({
    op_type: 'Transpose',
    name: 'output_to_nhwc',
    input: [last.name],
    output: [ONNX_OUTPUT],
    attribute: [ints('perm', [0, 2, 3, 1])],
  });

  const graph: OnnxGraph = {
    name: model.name,
    nodes,
    initializers,
    inputs: [valueInfo(ONNX_INPUT, ['N', inH, inW, inC])],
    outputs: [valueInfo(ONNX_OUTPUT, ['N', last.h, last.w, last.c])],
  };
  return { graph, imageNchw, reconstructionNchw: last.name };
}

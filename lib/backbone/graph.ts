/**
 * The EfficientNet-Lite feature extractor as ONNX nodes: appended to a graph under construction
 * (appendBackbone), or as a standalone model (buildFeatureExtractor).
 */
import { GraphBuilder } from '../onnx/graph';
import { encodeModel, floatTensor, int, ints, str, valueInfo } from '../onnx/proto';
import { UserError } from '../util/errors';
import type { BackboneWeights, FoldedConv } from './weights';

/** ImageNet normalisation the backbone was trained with (torchvision / TF EfficientNet-Lite). */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

export interface AppendBackboneOptions {
  /**
   * Feature stages to output, in the order wanted: 0 stride 2 (16 ch), 1 stride 4 (24 ch), 2 stride 8
   * (40 ch), 3 stride 16 (112 ch), 4 stride 32 (320 ch) (channels of lite0; read them from the result).
   * Nodes are built up to the deepest one requested.
   */
  stages: number[];
  /** Prefix of initializer names (so that two backbones can share a graph). Default 'backbone'. */
  prefix?: string;
  /** Apply the ImageNet mean/std normalisation inside the graph (input in [0, 1]). Default true. */
  normalize?: boolean;
}

export interface BackboneOutput {
  /** Tensor name in the graph: NCHW float32 [N, channels, ceil(H/stride), ceil(W/stride)]. */
  name: string;
  stage: number;
  stride: number;
  channels: number;
}

/**
 * Appends the backbone to `g`. `input`: NCHW float32 RGB in [0, 1], any N, H, W (convolutions use
 * TensorFlow 'SAME' padding, ONNX auto_pad SAME_UPPER, as the original and the PyTorch port's
 * Conv2dDynamicSamePadding do). Returns one output per requested stage.
 */
export function appendBackbone(
  g: GraphBuilder,
  input: string,
  weights: BackboneWeights,
  opts: AppendBackboneOptions,
): { outputs: BackboneOutput[] } {
  const prefix = opts.prefix ?? 'backbone';
  if (opts.stages.length === 0)
    throw new UserError('INVALID_ARGUMENT', 'appendBackbone: no stages requested');
  for (const s of opts.stages)
    if (!weights.stages.some((st) => st.stage === s))
      throw new UserError(
        'INVALID_ARGUMENT',
        `appendBackbone: unknown stage ${s} (0..${weights.stages.length - 1}: strides ${weights.stages.map((st) => st.stride).join(', ')})`,
      );
  if (new Set(opts.stages).size !== opts.stages.length)
    throw new UserError(
      'INVALID_ARGUMENT',
      `appendBackbone: stage listed twice in ${opts.stages.join(', ')}`,
    );
  const deepest = Math.max(...opts.stages);
  const lastBlock = weights.stages[deepest].lastBlock;
  const wanted = new Map(opts.stages.map((s) => [weights.stages[s].lastBlock, s]));

  const init = (name: string, dims: number[], data: Float32Array): string => {
    const full = `${prefix}/${name}`;
    g.initializers.push(floatTensor(full, dims, data));
    return full;
  };
  const relu6Min = init('relu6.min', [], Float32Array.of(0));
  const relu6Max = init('relu6.max', [], Float32Array.of(6));

  const conv = (x: string, c: FoldedConv): string => {
    const w = init(`${c.name}.weight`, [c.outChannels, c.inChannelsPerGroup, c.kernel, c.kernel], c.weight);
    const b = init(`${c.name}.bias`, [c.outChannels], c.bias);
    const y = g.op(
      'Conv',
      [x, w, b],
      [
        ints('kernel_shape', [c.kernel, c.kernel]),
        ints('strides', [c.stride, c.stride]),
        ints('dilations', [1, 1]),
        int('group', c.groups),
        str('auto_pad', c.kernel === 1 && c.stride === 1 ? 'NOTSET' : 'SAME_UPPER'),
      ],
    );
    return c.relu6 ? g.op('Clip', [y, relu6Min, relu6Max]) : y;
  };

  let x = input;
  if (opts.normalize ?? true) {
    const mean = init('imagenet.mean', [1, 3, 1, 1], Float32Array.from(IMAGENET_MEAN));
    const std = init('imagenet.std', [1, 3, 1, 1], Float32Array.from(IMAGENET_STD));
    x = g.op('Div', [g.op('Sub', [x, mean]), std]);
  }
  x = conv(x, weights.stem);
  const byStage = new Map<number, BackboneOutput>();
  for (const block of weights.blocks) {
    if (block.index > lastBlock) break;
    let y = block.expand ? conv(x, block.expand) : x;
    y = conv(y, block.depthwise);
    y = conv(y, block.project);
    x = block.residual ? g.op('Add', [y, x]) : y;
    const stage = wanted.get(block.index);
    if (stage !== undefined) {
      const st = weights.stages[stage];
      byStage.set(stage, { name: x, stage, stride: st.stride, channels: st.channels });
    }
  }
  return { outputs: opts.stages.map((s) => byStage.get(s)!) };
}

export const FEATURE_INPUT = 'image';

/**
 * A standalone ONNX model: input `image` [N, 3, H, W] (RGB in [0, 1]), one output per requested stage,
 * named `stride<k>` (e.g. `stride8`, `stride16`), in the order of `opts.stages`.
 */
export function buildFeatureExtractor(weights: BackboneWeights, opts: AppendBackboneOptions): Uint8Array {
  return buildFeatureExtractorWithOutputs(weights, opts).model;
}

/** buildFeatureExtractor plus the graph output names, strides and channels. */
export function buildFeatureExtractorWithOutputs(
  weights: BackboneWeights,
  opts: AppendBackboneOptions,
): { model: Uint8Array; outputs: BackboneOutput[] } {
  const g = new GraphBuilder();
  const { outputs } = appendBackbone(g, FEATURE_INPUT, weights, opts);
  const named = outputs.map((o) => {
    const name = `stride${o.stride}`;
    g.op('Identity', [o.name], [], name);
    return { ...o, name };
  });
  const model = encodeModel({
    name: `efficientnet-${weights.variant}-features`,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(FEATURE_INPUT, ['N', 3, 'H', 'W'])],
    outputs: named.map((o) => valueInfo(o.name, ['N', o.channels, `H/${o.stride}`, `W/${o.stride}`])),
  });
  return { model, outputs: named };
}

/**
 * lib/onnx/autodiff: finite-difference gradient checks on random and hand-made small graphs,
 * and the generated U-Net-lite backward graph against the hand-written one.
 */
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import protobuf from 'protobufjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../lib/model/backend';
import { buildGeneratedLossGraph } from '../lib/models/autoencoder/autodiff-loss';
import { buildGeneratedBackwardGraph } from '../lib/models/autoencoder/autodiff-unet';
import {
  buildLossGraph,
  LOSS_GRAD,
  LOSS_PRED,
  LOSS_TARGET,
  LOSS_TOTAL,
} from '../lib/models/autoencoder/loss-graph';
import { createLoss } from '../lib/models/autoencoder/losses';
import {
  activationName,
  biasName,
  buildBackwardGraph,
  buildForwardGraph,
  gradName,
  kernelName,
  TRAIN_INPUT,
  TRAIN_OUTPUT_GRAD,
  unetConvLayers,
} from '../lib/models/autoencoder/train-graph';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import { differentiate, extractGraph, type Shape, usedInitializers } from '../lib/onnx/autodiff';
import { GraphBuilder } from '../lib/onnx/graph';
import { encodeModel, floatTensor, int, ints, str, valueInfo } from '../lib/onnx/proto';
import { type BackwardGraphKind, OnnxTrainEngine } from '../lib/train/onnx-train-engine';
import { createOptimizer } from '../lib/train/tfjs-train-engine';
import { Rng } from '../lib/util/rng';
import { tinyConfig, tinySplit } from './support/train-fixtures';

const OUT = 'out';
const SEED = 'grad/out';

function randn(n: number, rng: Rng, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Largest |a - b| relative to the largest |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  let mag = 1e-12;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}

/** A small forward graph: inputs with concrete shapes (all differentiated), output OUT. */
interface Case {
  g: GraphBuilder;
  inputs: Record<string, number[]>;
  /** Inputs that are not differentiated (e.g. constant weights of a grouped conv). */
  fixed?: string[];
}

async function session(
  g: GraphBuilder,
  nodes: typeof g.nodes,
  inputs: Record<string, Shape>,
  outputs: string[],
) {
  const bytes = encodeModel({
    name: 'autodiff_test',
    nodes,
    initializers: usedInitializers(nodes, g.initializers),
    inputs: Object.entries(inputs).map(([n, s]) => valueInfo(n, s)),
    outputs: outputs.map((o) => ({ name: o })) as ReturnType<typeof valueInfo>[],
  });
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
}

/**
 * Directional finite-difference check: for random directions v, <dy, (f(x+ev) - f(x-ev)) / 2e> must equal
 * sum_i <grad_i, v_i>. Also checks each input's own directional derivative (v zero elsewhere).
 */
async function gradCheck(c: Case, seed: number): Promise<number> {
  const rng = new Rng(seed);
  const fwdNodes = c.g.nodes.splice(0, c.g.nodes.length);
  const wrt = Object.keys(c.inputs).filter((n) => !c.fixed?.includes(n));
  const { grads, shapes } = differentiate(c.g, {
    nodes: fwdNodes,
    initializers: c.g.initializers,
    inputShapes: c.inputs,
    seeds: { [OUT]: SEED },
    wrt,
  });
  const bwdNodes = c.g.nodes.splice(0, c.g.nodes.length);
  const outShape = shapes.get(OUT) as number[];
  // An input that no path connects to the output gets no gradient: it is still perturbed below, where
  // its (zero) contribution is checked too.
  const gradNames = wrt.map((w) => grads.get(w) as string);
  expect(gradNames.some((d) => d)).toBe(true);
  const all = [...fwdNodes, ...bwdNodes];
  const avail = new Set([...Object.keys(c.inputs), SEED, ...c.g.initializers.map((t) => t.name)]);
  const present = gradNames.filter((d) => d);
  const bwd = await session(
    c.g,
    extractGraph(all, present, avail),
    { ...c.inputs, [SEED]: outShape },
    present,
  );
  const fwd = await session(c.g, fwdNodes, c.inputs, [OUT]);

  const x: Record<string, Float32Array> = {};
  for (const [n, s] of Object.entries(c.inputs)) x[n] = randn(numel(s), rng);
  const dy = randn(numel(outShape), rng);
  const feeds = (vals: Record<string, Float32Array>) =>
    Object.fromEntries(Object.entries(vals).map(([n, v]) => [n, new ort.Tensor('float32', v, c.inputs[n])]));
  const res = await bwd.run({ ...feeds(x), [SEED]: new ort.Tensor('float32', dy, outShape) });
  const f = async (vals: Record<string, Float32Array>) =>
    (await fwd.run(feeds(vals)))[OUT].data as Float32Array;

  let worst = 0;
  for (const only of [...wrt, null]) {
    const v: Record<string, Float32Array> = {};
    for (const n of wrt)
      v[n] = only === null || only === n ? randn(x[n].length, rng) : new Float32Array(x[n].length);
    let analytic = 0;
    wrt.forEach((n, i) => {
      if (!gradNames[i]) return;
      const gd = res[gradNames[i]].data as Float32Array;
      expect(gd.length, `gradient shape of ${n}`).toBe(x[n].length);
      for (let k = 0; k < gd.length; k++) analytic += gd[k] * v[n][k];
    });
    const eps = 1e-3;
    const shift = (sign: number) =>
      Object.fromEntries(
        Object.entries(x).map(([n, xv]) => [n, v[n] ? xv.map((a, k) => a + sign * eps * v[n][k]) : xv]),
      );
    const plus = await f(shift(1));
    const minus = await f(shift(-1));
    let numeric = 0;
    for (let k = 0; k < dy.length; k++) numeric += (dy[k] * (plus[k] - minus[k])) / (2 * eps);
    const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(numeric));
    if (process.env.AUTODIFF_DEBUG) console.log(only, analytic, numeric, err);
    worst = Math.max(worst, err);
  }
  return worst;
}

const convAttrs = (k: number[], stride: number, pads: number[], group = 1) => [
  ints('kernel_shape', k),
  ints('strides', [stride, stride]),
  ints('pads', pads),
  int('group', group),
];
const upsample = (g: GraphBuilder, x: string, s = 2) =>
  g.op(
    'Resize',
    [x, '', g.floats([1, 1, s, s])],
    [
      str('mode', 'nearest'),
      str('coordinate_transformation_mode', 'asymmetric'),
      str('nearest_mode', 'floor'),
    ],
  );

/**
 * A random graph over [N,C,H,W] tensors: each step applies a random op to tensors of the pool (convs of
 * stride 1 or 2 with kernel 1 or 3 and their own weight and bias inputs, 2x upsampling, concat,
 * Relu/Sigmoid, Add/Sub/Mul with a same-shape tensor or a broadcast [1,C,1,1] input); OUT is a product
 * of the last tensor with a smooth function of it (so that the output depends on everything nonlinearly).
 */
function randomGraph(seed: number): Case {
  const rng = new Rng(seed);
  const g = new GraphBuilder();
  const inputs: Record<string, number[]> = {};
  const n = 1 + rng.int(2);
  const c0 = 2 + rng.int(2);
  const s0 = 8;
  inputs.x = [n, c0, s0, s0];
  const pool: { name: string; c: number; s: number }[] = [{ name: 'x', c: c0, s: s0 }];
  let params = 0;
  const param = (dims: number[]) => {
    const name = `p${params++}`;
    inputs[name] = dims;
    return name;
  };
  const steps = 4 + rng.int(4);
  for (let i = 0; i < steps; i++) {
    const t = pool[pool.length - 1 - rng.int(Math.min(2, pool.length))];
    const kind = rng.int(6);
    if (kind === 0 || (kind === 1 && t.s < 4)) {
      const co = 2 + rng.int(3);
      const k = rng.next() < 0.3 ? 1 : 3;
      const p = k === 3 ? 1 : 0;
      const y = g.op(
        'Conv',
        [t.name, param([co, t.c, k, k]), param([co])],
        convAttrs([k, k], 1, [p, p, p, p]),
      );
      pool.push({ name: y, c: co, s: t.s });
    } else if (kind === 1) {
      const co = 2 + rng.int(3);
      const y = g.op(
        'Conv',
        [t.name, param([co, t.c, 3, 3]), param([co])],
        convAttrs([3, 3], 2, [0, 0, 1, 1]),
      );
      pool.push({ name: y, c: co, s: t.s / 2 });
    } else if (kind === 2) {
      if (t.s <= 8) pool.push({ name: upsample(g, t.name), c: t.c, s: t.s * 2 });
      else pool.push({ name: g.op('Relu', [t.name]), c: t.c, s: t.s });
    } else if (kind === 3) {
      const other = pool.find((q) => q.s === t.s && q.name !== t.name) ?? t;
      pool.push({ name: g.op('Concat', [t.name, other.name], [int('axis', 1)]), c: t.c + other.c, s: t.s });
    } else if (kind === 4) {
      pool.push({ name: g.op(rng.next() < 0.5 ? 'Relu' : 'Sigmoid', [t.name]), c: t.c, s: t.s });
    } else {
      const same = pool.find((q) => q.s === t.s && q.c === t.c && q.name !== t.name);
      const other = same && rng.next() < 0.6 ? same.name : param([1, t.c, 1, 1]);
      const op = ['Add', 'Sub', 'Mul'][rng.int(3)];
      pool.push({ name: g.op(op, [t.name, other]), c: t.c, s: t.s });
    }
  }
  const last = pool[pool.length - 1].name;
  g.op('Mul', [last, g.op('Sigmoid', [last])], [], OUT);
  return { g, inputs };
}

describe('onnx autodiff: finite differences', () => {
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('random graph %i', async (seed) => {
    const c = randomGraph(seed);
    expect(await gradCheck(c, seed)).toBeLessThan(2e-2);
  });

  it('conv variants: stride 2 odd sizes, rectangular kernel, asymmetric pads, grouped const weights', async () => {
    const g = new GraphBuilder();
    const a = g.op('Conv', ['x', 'w1', 'b1'], convAttrs([3, 3], 2, [1, 1, 1, 1])); // 7 -> 4
    const b = g.op('Conv', [a, 'w2'], convAttrs([1, 3], 1, [0, 2, 0, 0])); // [4, 4] -> [4, 4]: W 4+2-3+1
    const wg = 'const/group';
    g.initializers.push(floatTensor(wg, [6, 1, 3, 3], randn(54, new Rng(3), 0.5)));
    const c = g.op('Conv', [b, wg], convAttrs([3, 3], 2, [1, 1, 0, 0], 3)); // grouped, stride 2
    g.op('Mul', [c, g.op('Sigmoid', [c])], [], OUT);
    const err = await gradCheck(
      { g, inputs: { x: [2, 2, 7, 7], w1: [4, 2, 3, 3], b1: [4], w2: [3, 4, 1, 3] } },
      5,
    );
    expect(err).toBeLessThan(2e-2);
  });

  it('SAME_UPPER convs (stride 2, odd and even sizes, depthwise), as in the pretrained backbone', async () => {
    const g = new GraphBuilder();
    const same = (k: number, stride: number, group = 1) => [
      ints('kernel_shape', [k, k]),
      ints('strides', [stride, stride]),
      int('group', group),
      str('auto_pad', 'SAME_UPPER'),
    ];
    const a = g.op('Sigmoid', [g.op('Conv', ['x', 'w1', 'b1'], same(3, 2))]); // 9x8 -> 5x4
    const wd = 'const/depthwise';
    g.initializers.push(floatTensor(wd, [4, 1, 3, 3], randn(36, new Rng(4), 0.5)));
    const b = g.op('Sigmoid', [g.op('Conv', [a, wd], same(3, 2, 4))]); // 5x4 -> 3x2, depthwise
    const c = g.op('Conv', [b, 'w2'], same(5, 1)); // 3x2 -> 3x2, 5x5
    g.op('Mul', [c, g.op('Sigmoid', [c])], [], OUT);
    const err = await gradCheck(
      { g, inputs: { x: [2, 2, 9, 8], w1: [4, 2, 3, 3], b1: [4], w2: [3, 4, 5, 5] } },
      11,
    );
    expect(err).toBeLessThan(2e-2);
  });

  it('Clip (ReLU6) has the gradient of its ReLU form relu(x - lo) - relu(x - hi) + lo', async () => {
    // Finite differences are unreliable at Clip's kinks; its ReLU form has the same gradient off them.
    const grad = async (form: 'clip' | 'relu') => {
      const g = new GraphBuilder();
      const lo = g.floats([0]);
      const hi = g.floats([6]);
      const clipped =
        form === 'clip'
          ? g.op('Clip', ['x', 'const/lo', 'const/hi'])
          : g.op('Add', [
              g.op('Sub', [g.op('Relu', [g.op('Sub', ['x', lo])]), g.op('Relu', [g.op('Sub', ['x', hi])])]),
              lo,
            ]);
      g.initializers.push(
        floatTensor('const/lo', [], Float32Array.of(0)),
        floatTensor('const/hi', [], Float32Array.of(6)),
      );
      g.op('Mul', [clipped, clipped], [], OUT);
      const fwd = g.nodes.splice(0, g.nodes.length);
      const { grads } = differentiate(g, {
        nodes: fwd,
        initializers: g.initializers,
        inputShapes: { x: [64] },
        seeds: { [OUT]: SEED },
        wrt: ['x'],
      });
      const d = grads.get('x') as string;
      const nodes = extractGraph(
        [...fwd, ...g.nodes],
        [d],
        new Set(['x', SEED, ...g.initializers.map((t) => t.name)]),
      );
      const s = await session(g, nodes, { x: [64], [SEED]: [64] }, [d]);
      const x = Float32Array.from({ length: 64 }, (_, i) => -3 + (12 * i) / 63 + 0.01); // -3..9, off the kinks
      const out = await s.run({
        x: new ort.Tensor('float32', x, [64]),
        [SEED]: new ort.Tensor('float32', new Float32Array(64).fill(1), [64]),
      });
      return Array.from(out[d].data as Float32Array);
    };
    const clip = await grad('clip');
    expect(clip).toEqual(await grad('relu'));
    expect(clip.filter((v) => v === 0).length).toBeGreaterThan(20); // both sides clipped
  });

  it('reductions, division, Sqrt, Abs, Neg, Reciprocal, Exp, Log, Pow, Where, Transpose, Reshape, Unsqueeze, Sum', async () => {
    const g = new GraphBuilder();
    const t = g.transpose('x', [0, 2, 3, 1]); // [2,5,5,3]
    const m = g.op('ReduceMean', [t], [ints('axes', [1, 2]), int('keepdims', 1)]); // [2,1,1,3]
    const s = g.op('ReduceSum', [t, g.ints64([3])], [int('keepdims', 0)]); // [2,5,5]
    const u = g.op('Unsqueeze', [s, g.ints64([3])]); // [2,5,5,1]
    const d = g.op('Div', [g.op('Sub', [t, m]), g.op('Add', [g.op('Mul', [u, u]), g.floats([1])])]);
    const q = g.op('Sqrt', [g.op('Add', [g.op('Abs', [g.op('Neg', [d])]), g.floats([0.5])])]);
    const r0 = g.op('Reciprocal', [g.op('Add', [g.op('Mul', [q, q]), g.floats([1])])]);
    const r1 = g.op('Log', [g.op('Add', [g.op('Exp', [r0]), g.floats([0.5])])]);
    const r = g.op('Pow', [
      g.op('Add', [r1, g.floats([1])]),
      g.op('Add', [g.op('Abs', ['y']), g.floats([0.5])]),
    ]);
    const w = g.op('Where', [
      g.op('Greater', [d, g.floats([0])]),
      g.op('Mul', [d, r]),
      g.op('Mul', [d, 'y']),
    ]); // continuous at 0
    const flat = g.op('Reshape', [w, g.ints64([2, -1])]);
    const all = g.op('ReduceMean', [flat], [int('keepdims', 0)]); // []
    g.op('Sum', [flat, g.op('Mul', [all, all]), 'y2'], [], OUT);
    const err = await gradCheck({ g, inputs: { x: [2, 3, 5, 5], y: [3], y2: [1, 75] } }, 9);
    expect(err).toBeLessThan(2e-2);
  });

  it('throws for an op without a gradient, and skips nodes off the path', async () => {
    const g = new GraphBuilder();
    const a = g.op('Relu', ['x']);
    g.op('Sigmoid', ['unused']);
    g.op('Softmax', [a], [], OUT);
    expect(() =>
      differentiate(g, {
        nodes: g.nodes.splice(0),
        initializers: [],
        inputShapes: { x: [2, 3], unused: [2] },
        seeds: { [OUT]: SEED },
        wrt: ['x'],
      }),
    ).toThrow(/no gradient for Softmax/);
  });
});

/**
 * Each graph output's canonical hash: a node's hash covers its op, attributes and its inputs' hashes
 * (a graph input or initializer by its name), so equal multisets mean the same computation, node for
 * node, up to node and tensor names and node order.
 */
function canonicalOutputs(bytes: Uint8Array): { outputs: Map<string, string>; nodeCount: number } {
  const root = protobuf.parse(
    `syntax = "proto2"; package onnx;
     message AttributeProto { optional string name = 1; optional float f = 2; optional int64 i = 3; optional bytes s = 4; repeated int64 ints = 8; }
     message NodeProto { repeated string input = 1; repeated string output = 2; optional string op_type = 4; repeated AttributeProto attribute = 5; }
     message ValueInfoProto { optional string name = 1; }
     message GraphProto { repeated NodeProto node = 1; repeated ValueInfoProto output = 12; }
     message ModelProto { optional GraphProto graph = 7; }`,
    { keepCase: true },
  ).root;
  type Node = { input: string[]; output: string[]; op_type: string; attribute?: object[] };
  const model = root
    .lookupType('onnx.ModelProto')
    .toObject(root.lookupType('onnx.ModelProto').decode(bytes), {
      longs: Number,
      bytes: String,
    }) as { graph: { node: Node[]; output: { name: string }[] } };
  const hashOf = new Map<string, string>();
  for (const n of model.graph.node) {
    const ins = n.input.map((i) => hashOf.get(i) ?? `input:${i}`);
    if (['Sum', 'Add', 'Mul'].includes(n.op_type)) ins.sort(); // commutative (exactly, in floats too)
    const h = createHash('sha1')
      .update(JSON.stringify([n.op_type, n.attribute ?? [], ins]))
      .digest('hex');
    n.output.forEach((o, k) => {
      hashOf.set(o, `${h}:${k}`);
    });
  }
  return {
    outputs: new Map(model.graph.output.map((o) => [o.name, hashOf.get(o.name) as string])),
    nodeCount: model.graph.node.length,
  };
}

describe('generated U-Net-lite backward graph', () => {
  it('is the hand-written graph, node for node (up to names and order)', () => {
    for (const [size, widths] of [
      [32, [3, 5]],
      [128, [16, 32, 64, 128]],
    ] as [number, number[]][]) {
      const hand = canonicalOutputs(buildBackwardGraph(size, widths));
      const gen = canonicalOutputs(buildGeneratedBackwardGraph(size, widths));
      expect(gen.outputs).toEqual(hand.outputs);
      expect(gen.nodeCount).toBe(hand.nodeCount);
    }
  });

  it.each([
    { size: 16, widths: [4], n: 1 },
    { size: 32, widths: [3, 5], n: 3 },
    { size: 64, widths: [4, 6, 8], n: 2 },
  ])('equals the hand-written graph: $size px, widths $widths, batch $n', async ({ size, widths, n }) => {
    const rng = new Rng(size + n);
    const layers = unetConvLayers(size, widths);
    const opts = { intraOpNumThreads: 1, interOpNumThreads: 1 };
    const forward = await ort.InferenceSession.create(buildForwardGraph(size, widths), opts);
    const hand = await ort.InferenceSession.create(buildBackwardGraph(size, widths), opts);
    const gen = await ort.InferenceSession.create(buildGeneratedBackwardGraph(size, widths), opts);
    const image = new ort.Tensor(
      'float32',
      Float32Array.from({ length: n * size * size * 3 }, () => rng.next()),
      [n, size, size, 3],
    );
    const params: Record<string, ort.Tensor> = {};
    for (const l of layers) {
      const fan = l.k * l.k * l.ci;
      params[kernelName(l.name)] = new ort.Tensor('float32', randn(fan * l.co, rng, Math.sqrt(2 / fan)), [
        l.k,
        l.k,
        l.ci,
        l.co,
      ]);
      params[biasName(l.name)] = new ort.Tensor('float32', randn(l.co, rng, 0.1), [l.co]);
    }
    const fwd = await forward.run({ [TRAIN_INPUT]: image, ...params });
    const feeds: Record<string, ort.Tensor> = {
      [TRAIN_INPUT]: image,
      [TRAIN_OUTPUT_GRAD]: new ort.Tensor('float32', randn(n * size * size * 3, rng, 0.01), [
        n,
        size,
        size,
        3,
      ]),
    };
    for (const l of layers) {
      feeds[activationName(l.name)] = fwd[activationName(l.name)];
      feeds[kernelName(l.name)] = params[kernelName(l.name)];
    }
    const a = await hand.run(feeds);
    const b = await gen.run(feeds);
    let worst = 0;
    for (const l of layers)
      for (const p of [kernelName(l.name), biasName(l.name)]) {
        const e = relErr(b[gradName(p)].data as Float32Array, a[gradName(p)].data as Float32Array);
        expect(e, p).toBeLessThan(1e-4);
        worst = Math.max(worst, e);
      }
    console.log(
      `generated vs hand-written backward, ${size} px ${widths}: max relative error ${worst.toExponential(2)}`,
    );
  });
});

describe('generated loss gradient', () => {
  // The loss graph's forward nodes (mse, SSIM with grouped Gaussian convs, Sobel edge term, symbolic batch
  // size) differentiated w.r.t. the reconstruction: equal to its hand-written dLoss/dReconstruction.
  it.each([
    { terms: { mse: 1, ssim: 0, edge: 0 } },
    { terms: { mse: 1, ssim: 0.5, edge: 0.2 } },
    { terms: { mse: 0, ssim: 1, edge: 0 } },
    { terms: { mse: 0, ssim: 0, edge: 1 } },
  ])('equals the hand-written loss graph: $terms', async ({ terms }) => {
    const size = 16;
    const n = 2;
    const weights = { ...terms, perceptual: 0 };
    const hand = await ort.InferenceSession.create(buildLossGraph(size, weights), { intraOpNumThreads: 1 });
    const generated = await ort.InferenceSession.create(buildGeneratedLossGraph(size, weights), {
      intraOpNumThreads: 1,
    });
    const rng = new Rng(17);
    const shape = [n, size, size, 3];
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: numel(shape) }, () => rng.next()),
      shape,
    );
    const p = new ort.Tensor(
      'float32',
      Float32Array.from({ length: numel(shape) }, () => rng.next()),
      shape,
    );
    const a = await hand.run({ [LOSS_TARGET]: x, [LOSS_PRED]: p });
    const b = await generated.run({ [LOSS_TARGET]: x, [LOSS_PRED]: p });
    expect(b[LOSS_TOTAL].data[0]).toBe(a[LOSS_TOTAL].data[0]);
    const e = relErr(b[LOSS_GRAD].data as Float32Array, a[LOSS_GRAD].data as Float32Array);
    console.log(`generated vs hand-written loss gradient ${JSON.stringify(terms)}: ${e.toExponential(2)}`);
    expect(e).toBeLessThan(1e-4);
  });
});

describe('ONNX training engine with the generated backward graph', () => {
  beforeAll(async () => {
    await selectBackend('wasm', 'train');
  });

  it('takes the same steps as with the hand-written one (full loss, clipping, AdamW)', async () => {
    const c = tinyConfig({
      grad_clip: 0.05,
      optimizer: { name: 'adamw', lr: 1e-3, weight_decay: 0.01 },
      loss: { mse: 1, ssim: 0.5, edge: 0.2, perceptual: 0 },
      threads: 1,
    });
    const run = async (backwardGraph: BackwardGraphKind) => {
      const model = buildUNetLite({ imageSize: c.image_size, widths: c.model.widths, seed: 3 });
      const optimizer = createOptimizer(c);
      const loss = await createLoss(c.loss, c.image_size);
      const engine = await OnnxTrainEngine.create(model, optimizer, loss, c, { threads: 1, backwardGraph });
      const losses: number[] = [];
      for (let s = 0; s < 3; s++) {
        const images = Float32Array.from(tinySplit(2, c.image_size, s + 1).images, (v) => v / 255);
        losses.push((await engine.step(images, 2, 1e-3)).loss);
      }
      await engine.syncToModel();
      const weights = model.getWeights().map((w) => w.dataSync().slice());
      await engine.release();
      model.dispose();
      optimizer.dispose();
      loss.dispose();
      return { losses, weights };
    };
    const hand = await run('hand-written');
    const generated = await run('generated');
    expect(generated.losses).toEqual(hand.losses);
    expect(generated.weights.length).toBe(hand.weights.length);
    for (let i = 0; i < hand.weights.length; i++)
      expect(relErr(generated.weights[i], hand.weights[i])).toBeLessThan(1e-6);
  });
});

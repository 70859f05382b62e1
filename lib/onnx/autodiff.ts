/**
 * Reverse-mode differentiation of ONNX graphs built with GraphBuilder: given the forward nodes, the
 * static shapes of the graph inputs (string dims are symbolic, e.g. the batch 'N'), the gradients fed
 * for some outputs (seeds) and the tensors to differentiate w.r.t., it appends the backward nodes to a
 * GraphBuilder and returns the name of each requested gradient.
 *
 * Only the nodes on a path from a `wrt` tensor to a seeded output are differentiated. A VJP refers to
 * forward tensors (a Conv's input, an activation's output) by name; `extractGraph` then keeps the
 * forward nodes that compute the referenced tensors which the backward graph does not get as inputs
 * (e.g. the U-Net's concat of upsampled and skip maps), and drops everything unused. buildBackwardModel
 * does all of it and encodes the model (lib/models/autoencoder/autodiff-unet: the U-Net-lite's backward graph).
 *
 * VJPs (NCHW, opset 17):
 *   Conv (group 1 or grouped, any stride, explicit or SAME_* pads, dilation 1):
 *     dB = ReduceSum(dy, [0,2,3]);
 *     dX = Conv(dy, flipped in/out-transposed W) at stride 1 and group 1 (a GEMM with K = co*k*k),
 *          else ConvTranspose(dy, W) with the forward's strides, pads, group and the output_padding
 *          that restores the input size;
 *     dW (group 1) = one batched GEMM per kernel tap, the same formulation as the hand-written graph
 *          (lib/models/autoencoder/train-graph weightGradient): stride 1 as contiguous windows of the
 *          row-flattened padded input, stride > 1 as strided slices; result in [kh,kw,ci,co], then
 *          transposed to ONNX [co,ci,kh,kw] (a Transpose of a Transpose is folded, so a tfjs-layout
 *          kernel fed through Transpose gets its gradient without any copy).
 *   Resize (nearest, asymmetric, floor, integer scales): sum over each s x s block (AveragePool * s²).
 *   Concat: Split.  Relu: dy * Sign(y).  Clip: dy where min < x < max.  Sigmoid: dy * y (1 - y).  Sqrt: dy / (2y).  Abs: dy Sign(x).
 *   Exp: dy y.  Log: dy / x.  Neg, Reciprocal, Identity, Transpose, Reshape / Unsqueeze / Squeeze.
 *   Add, Sub, Mul, Div, Pow, Sum, Where: with numpy broadcasting (gradients summed over broadcast axes).
 *   ReduceSum, ReduceMean: Expand back to the input shape (/ count for the mean).
 * Non-differentiable (no gradient flows through): Shape, Size, Cast, Sign, Greater, Less, Equal.
 */
import { GraphBuilder } from './graph';
import { encodeModel, int, ints, type OnnxNode, type OnnxTensor, type valueInfo } from './proto';

export type Dim = number | string;
export type Shape = Dim[];

export interface DifferentiateOptions {
  /** Forward nodes in topological order (GraphBuilder order). */
  nodes: OnnxNode[];
  /** Initializers the forward nodes use: constant operands (shapes, axes, scales) are read from them. */
  initializers: OnnxTensor[];
  /** Shapes of the forward graph's inputs (not of initializers). */
  inputShapes: Record<string, Shape>;
  /** Forward tensor -> the name of dLoss/dTensor (a backward-graph input or an existing tensor). */
  seeds: Record<string, string>;
  /** Tensors to get gradients for (graph inputs or intermediate tensors). */
  wrt: string[];
}

export interface Differentiated {
  /** wrt tensor -> its gradient tensor; absent when no seeded output depends on it. */
  grads: Map<string, string>;
  /** Every forward tensor's inferred shape. */
  shapes: Map<string, Shape>;
}

const NON_DIFFERENTIABLE = new Set(['Shape', 'Size', 'Cast', 'Sign', 'Greater', 'Less', 'Equal']);

function attr(node: OnnxNode, name: string) {
  return node.attribute?.find((a) => a.name === name);
}
function attrInt(node: OnnxNode, name: string, dflt: number): number {
  const a = attr(node, name);
  return a?.i === undefined ? dflt : Number(a.i);
}
function attrInts(node: OnnxNode, name: string): number[] | undefined {
  return attr(node, name)?.ints?.map(Number);
}
function attrStr(node: OnnxNode, name: string, dflt: string): string {
  const s = attr(node, name)?.s;
  return s ? new TextDecoder().decode(s) : dflt;
}

/** Values of a constant initializer (int64 or float32). */
class Constants {
  private readonly byName = new Map<string, OnnxTensor>();
  constructor(inits: OnnxTensor[]) {
    for (const t of inits) this.byName.set(t.name, t);
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  tensor(name: string): OnnxTensor | undefined {
    return this.byName.get(name);
  }
  values(name: string): number[] | undefined {
    const t = this.byName.get(name);
    if (!t) return undefined;
    const buf = t.raw_data.buffer.slice(t.raw_data.byteOffset, t.raw_data.byteOffset + t.raw_data.byteLength);
    if (t.data_type === 7) return Array.from(new BigInt64Array(buf), Number);
    if (t.data_type === 1) return Array.from(new Float32Array(buf));
    return undefined;
  }
  need(name: string, what: string): number[] {
    const v = this.values(name);
    if (!v) throw new Error(`onnx autodiff: ${what} (${name}) must be a constant initializer`);
    return v;
  }
}

const dimEq = (a: Dim, b: Dim) => a === b;

function broadcast(shapes: Shape[]): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const v = s[i - (rank - s.length)] ?? 1;
      if (v === 1) continue;
      if (d !== 1 && !dimEq(d, v))
        throw new Error(`onnx autodiff: cannot broadcast ${JSON.stringify(shapes)}`);
      d = v;
    }
    out.push(d);
  }
  return out;
}

const normAxes = (axes: number[], rank: number) => axes.map((a) => (a < 0 ? a + rank : a));

/** Static shape inference for the supported ops; undefined where unknown. */
function inferShapes(
  nodes: OnnxNode[],
  c: Constants,
  inputShapes: Record<string, Shape>,
): Map<string, Shape> {
  const shapes = new Map<string, Shape>(Object.entries(inputShapes));
  const shapeOf = (name: string): Shape | undefined => {
    const s = shapes.get(name);
    if (s) return s;
    const t = c.tensor(name);
    return t ? t.dims.map(Number) : undefined;
  };
  for (const n of nodes) {
    const ins = n.input.map((i) => (i === '' ? undefined : shapeOf(i)));
    const x = ins[0];
    let out: Shape | Shape[] | undefined;
    switch (n.op_type) {
      case 'Identity':
      case 'Relu':
      case 'Sigmoid':
      case 'Neg':
      case 'Abs':
      case 'Sqrt':
      case 'Reciprocal':
      case 'Sign':
      case 'Cast':
      case 'Exp':
      case 'Log':
      case 'Clip':
        out = x;
        break;
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div':
      case 'Pow':
      case 'Sum':
      case 'Where':
      case 'Greater':
      case 'Less':
      case 'Equal':
        out = ins.every((s) => s) ? broadcast(ins as Shape[]) : undefined;
        break;
      case 'Transpose': {
        const perm = attrInts(n, 'perm');
        out = x && (perm ?? x.map((_, i) => x.length - 1 - i)).map((p) => x[p]);
        break;
      }
      case 'Conv': {
        const w = ins[1];
        if (!x || !w) break;
        const k = attrInts(n, 'kernel_shape') ?? (w.slice(2) as number[]);
        const st = attrInts(n, 'strides') ?? [1, 1];
        const p = attrInts(n, 'pads') ?? [0, 0, 0, 0];
        const sp = autoPad(n).startsWith('SAME')
          ? [0, 1].map((i) => Math.ceil(Number(x[2 + i]) / st[i]))
          : [0, 1].map((i) => Math.floor((Number(x[2 + i]) + p[i] + p[i + 2] - k[i]) / st[i]) + 1);
        out = [x[0], w[0], ...sp];
        break;
      }
      case 'Resize': {
        const scales = c.need(n.input[2], 'Resize scales');
        out = x?.map((d, i) => (scales[i] === 1 ? d : Number(d) * scales[i]));
        break;
      }
      case 'Concat': {
        if (!ins.every((s) => s)) break;
        const axis = normAxes([attrInt(n, 'axis', 0)], (x as Shape).length)[0];
        const s = [...(x as Shape)];
        s[axis] = (ins as Shape[]).reduce((acc, t) => acc + Number(t[axis]), 0);
        out = s;
        break;
      }
      case 'ReduceSum':
      case 'ReduceMean': {
        if (!x) break;
        const ax = reduceAxes(n, c, x.length);
        const keep = attrInt(n, 'keepdims', 1) === 1;
        out = keep ? x.map((d, i) => (ax.includes(i) ? 1 : d)) : x.filter((_, i) => !ax.includes(i));
        break;
      }
      case 'Reshape': {
        if (!x) break;
        const target = c.need(n.input[1], 'Reshape shape');
        const s: Shape = target.map((d, i) => (d === 0 ? x[i] : d));
        const known = x.every((d) => typeof d === 'number');
        if (s.includes(-1)) {
          if (!known) {
            out = undefined;
            break;
          }
          const total = (x as number[]).reduce((a, b) => a * b, 1);
          const rest = s.filter((d) => d !== -1).reduce<number>((a, b) => a * Number(b), 1);
          s[s.indexOf(-1)] = total / rest;
        }
        out = s;
        break;
      }
      case 'Unsqueeze': {
        if (!x) break;
        const axes = normAxes(c.need(n.input[1], 'Unsqueeze axes'), x.length + 1);
        const s = [...x];
        for (const a of [...axes].sort((p, q) => p - q)) s.splice(a, 0, 1);
        out = s;
        break;
      }
      case 'Squeeze': {
        if (!x) break;
        const axes = normAxes(c.need(n.input[1], 'Squeeze axes'), x.length);
        out = x.filter((_, i) => !axes.includes(i));
        break;
      }
      case 'Shape': {
        if (!x) break;
        const start = attrInt(n, 'start', 0);
        const end = attr(n, 'end') ? attrInt(n, 'end', x.length) : x.length;
        out = [end - start];
        break;
      }
      case 'Size':
        out = [];
        break;
      case 'Split': {
        if (!x) break;
        const axis = normAxes([attrInt(n, 'axis', 0)], x.length)[0];
        const sizes = c.need(n.input[1], 'Split sizes');
        out = sizes.map((sz) => x.map((d, i) => (i === axis ? sz : d)));
        break;
      }
      default:
        out = undefined;
    }
    if (out === undefined) continue;
    if (n.op_type === 'Split') for (const [i, s] of (out as Shape[]).entries()) shapes.set(n.output[i], s);
    else shapes.set(n.output[0], out as Shape);
  }
  return shapes;
}

function reduceAxes(n: OnnxNode, c: Constants, rank: number): number[] {
  const fromAttr = attrInts(n, 'axes');
  const fromInput = n.input[1] ? c.need(n.input[1], `${n.op_type} axes`) : undefined;
  const axes = fromAttr ?? fromInput;
  if (!axes || axes.length === 0) {
    if (attrInt(n, 'noop_with_empty_axes', 0) === 1) throw new Error('onnx autodiff: noop_with_empty_axes');
    return Array.from({ length: rank }, (_, i) => i);
  }
  return normAxes(axes, rank);
}

/**
 * Appends to `g` the backward nodes of `opts.nodes` and returns the gradients of `opts.wrt`.
 * `g` should be the builder that made the forward nodes (or share its constants), as the VJPs add
 * constants with its helpers.
 */
export function differentiate(g: GraphBuilder, opts: DifferentiateOptions): Differentiated {
  const c = new Constants([...opts.initializers, ...g.initializers]);
  const shapes = inferShapes(opts.nodes, c, opts.inputShapes);
  const shapeOf = (name: string): Shape => {
    const s = shapes.get(name) ?? c.tensor(name)?.dims.map(Number);
    if (!s) throw new Error(`onnx autodiff: no static shape for ${name}`);
    return s;
  };

  // Tensors that depend on a wrt tensor (forward) and reach a seeded output (backward).
  const depends = new Set(opts.wrt);
  for (const n of opts.nodes)
    if (!NON_DIFFERENTIABLE.has(n.op_type) && n.input.some((i) => depends.has(i)))
      for (const o of n.output) depends.add(o);
  const reaches = new Set(Object.keys(opts.seeds));
  for (const n of [...opts.nodes].reverse())
    if (!NON_DIFFERENTIABLE.has(n.op_type) && n.output.some((o) => reaches.has(o)))
      for (const i of n.input) if (i) reaches.add(i);
  const needs = (t: string) => depends.has(t) && reaches.has(t);

  // Gradient contributions per forward tensor, summed when its producer is reached.
  const pending = new Map<string, string[]>();
  const add = (t: string, grad: string | undefined) => {
    if (grad === undefined || !needs(t)) return;
    pending.set(t, [...(pending.get(t) ?? []), grad]);
  };
  const gradOf = (t: string): string | undefined => {
    const parts = pending.get(t);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length === 1) return parts[0];
    const s = emit('Sum', parts);
    pending.set(t, [s]);
    return s;
  };
  for (const [t, grad] of Object.entries(opts.seeds)) add(t, grad);

  // Producers of backward tensors, for folding Transpose(Transpose(x)).
  const producers = new Map<string, OnnxNode>();
  const forwardProducers = new Map<string, OnnxNode>();
  for (const n of opts.nodes) for (const o of n.output) forwardProducers.set(o, n);
  // Backward node and tensor names: 'grad/<op>_<k>', unique also when the forward nodes come from
  // another builder (a decoded model) whose generated names would collide with g's.
  const taken = new Set(opts.nodes.flatMap((n) => [n.name, ...n.output]));
  let count = 0;
  const fresh = (op: string) => {
    let name = `grad/${op}_${count++}`;
    while (taken.has(name) || taken.has(`${name}:0`)) name = `grad/${op}_${count++}`;
    return name;
  };
  const emit = (op: string, inputs: string[], attrs: OnnxNode['attribute'] = []) => {
    const name = fresh(op);
    const out = g.op(op, inputs, attrs, `${name}:0`);
    const node = g.nodes[g.nodes.length - 1];
    node.name = name;
    producers.set(out, node);
    return out;
  };
  const transpose = (x: string, perm: number[]): string => {
    const p = producers.get(x);
    if (p?.op_type === 'Transpose') {
      const inner = attrInts(p, 'perm') as number[];
      const composed = perm.map((i) => inner[i]);
      if (composed.every((v, i) => v === i)) return p.input[0];
      return emit('Transpose', [p.input[0]], [ints('perm', composed)]);
    }
    if (perm.every((v, i) => v === i)) return x;
    return emit('Transpose', [x], [ints('perm', perm)]);
  };

  /** dy of a broadcast result (shape `outShape`) summed down to an operand of shape `inShape`. */
  const unbroadcast = (dy: string, outShape: Shape, inShape: Shape, input: string): string => {
    if (outShape.length === inShape.length && outShape.every((d, i) => dimEq(d, inShape[i]))) return dy;
    const lead = outShape.length - inShape.length;
    const axes: number[] = [];
    outShape.forEach((d, i) => {
      const v = i < lead ? 1 : inShape[i - lead];
      if (v === 1 && d !== 1) axes.push(i);
    });
    const summed = axes.length ? emit('ReduceSum', [dy, g.ints64(axes)], [int('keepdims', 1)]) : dy;
    if (lead === 0) return summed;
    const target = inShape.every((d) => typeof d === 'number')
      ? g.ints64(inShape as number[])
      : emit('Shape', [input]);
    return emit('Reshape', [summed, target]);
  };

  for (const n of [...opts.nodes].reverse()) {
    if (NON_DIFFERENTIABLE.has(n.op_type)) continue;
    if (!n.input.some((i) => i && needs(i))) continue;
    const dys = n.output.map(gradOf);
    if (dys.every((d) => d === undefined)) continue;
    const dy = dys[0] as string;
    const [a, b] = n.input;
    const y = n.output[0];
    const yShape = () => shapeOf(y);
    switch (n.op_type) {
      case 'Identity':
        add(a, dy);
        break;
      case 'Relu':
        add(a, emit('Mul', [dy, emit('Sign', [y])]));
        break;
      case 'Clip': {
        // dy where min < x < max (ReLU6 in the pretrained backbone), else 0; min/max are not differentiated.
        const [, lo, hi] = n.input;
        let mask = lo ? emit('Greater', [a, lo]) : undefined;
        if (hi) {
          const below = emit('Less', [a, hi]);
          mask = mask ? emit('And', [mask, below]) : below;
        }
        add(a, mask ? emit('Mul', [dy, emit('Cast', [mask], [int('to', 1)])]) : dy);
        break;
      }
      case 'Sigmoid':
        add(a, emit('Mul', [dy, emit('Mul', [y, emit('Sub', [g.floats([1]), y])])]));
        break;
      case 'Neg':
        add(a, emit('Neg', [dy]));
        break;
      case 'Abs':
        add(a, emit('Mul', [dy, emit('Sign', [a])]));
        break;
      case 'Sqrt':
        add(a, emit('Div', [emit('Mul', [dy, g.floats([0.5])]), y]));
        break;
      case 'Exp':
        add(a, emit('Mul', [dy, y]));
        break;
      case 'Log':
        add(a, emit('Div', [dy, a]));
        break;
      case 'Reciprocal':
        add(a, emit('Neg', [emit('Mul', [dy, emit('Mul', [y, y])])]));
        break;
      case 'Transpose': {
        const perm = attrInts(n, 'perm') ?? shapeOf(a).map((_, i, s) => s.length - 1 - i);
        const inv = perm.map((_, i) => perm.indexOf(i));
        add(a, transpose(dy, inv));
        break;
      }
      case 'Reshape':
      case 'Unsqueeze':
      case 'Squeeze': {
        const s = shapeOf(a);
        const target = s.every((d) => typeof d === 'number') ? g.ints64(s as number[]) : emit('Shape', [a]);
        add(a, emit('Reshape', [dy, target]));
        break;
      }
      case 'Add':
      case 'Sum':
        for (const i of n.input) if (needs(i)) add(i, unbroadcast(dy, yShape(), shapeOf(i), i));
        break;
      case 'Sub':
        if (needs(a)) add(a, unbroadcast(dy, yShape(), shapeOf(a), a));
        if (needs(b)) add(b, unbroadcast(emit('Neg', [dy]), yShape(), shapeOf(b), b));
        break;
      case 'Mul':
        if (needs(a)) add(a, unbroadcast(emit('Mul', [dy, b]), yShape(), shapeOf(a), a));
        if (needs(b)) add(b, unbroadcast(emit('Mul', [dy, a]), yShape(), shapeOf(b), b));
        break;
      case 'Div':
        if (needs(a)) add(a, unbroadcast(emit('Div', [dy, b]), yShape(), shapeOf(a), a));
        if (needs(b))
          add(b, unbroadcast(emit('Neg', [emit('Mul', [dy, emit('Div', [y, b])])]), yShape(), shapeOf(b), b));
        break;
      case 'Pow':
        // d a^b / da = b a^(b-1);  d a^b / db = a^b log a
        if (needs(a))
          add(
            a,
            unbroadcast(
              emit('Mul', [dy, emit('Mul', [b, emit('Pow', [a, emit('Sub', [b, g.floats([1])])])])]),
              yShape(),
              shapeOf(a),
              a,
            ),
          );
        if (needs(b))
          add(b, unbroadcast(emit('Mul', [dy, emit('Mul', [y, emit('Log', [a])])]), yShape(), shapeOf(b), b));
        break;
      case 'Where': {
        const [cond, x1, x2] = n.input;
        const zero = g.floats([0]);
        if (needs(x1)) add(x1, unbroadcast(emit('Where', [cond, dy, zero]), yShape(), shapeOf(x1), x1));
        if (needs(x2)) add(x2, unbroadcast(emit('Where', [cond, zero, dy]), yShape(), shapeOf(x2), x2));
        break;
      }
      case 'ReduceSum':
      case 'ReduceMean': {
        const xs = shapeOf(a);
        const axes = reduceAxes(n, c, xs.length);
        const kept = attrInt(n, 'keepdims', 1) === 1 ? dy : emit('Unsqueeze', [dy, g.ints64(axes)]);
        let grad = emit('Expand', [kept, emit('Shape', [a])]);
        if (n.op_type === 'ReduceMean') {
          const reduced = axes.map((i) => xs[i]);
          const scale = reduced.every((d) => typeof d === 'number')
            ? g.floats([1 / (reduced as number[]).reduce((p, q) => p * q, 1)])
            : emit('Div', [
                emit('Cast', [emit('Size', [kept])], [int('to', 1)]),
                emit('Cast', [emit('Size', [a])], [int('to', 1)]),
              ]);
          grad = emit('Mul', [grad, scale]);
        }
        add(a, grad);
        break;
      }
      case 'Concat': {
        const axis = normAxes([attrInt(n, 'axis', 0)], yShape().length)[0];
        const sizes = n.input.map((i) => Number(shapeOf(i)[axis]));
        const name = fresh('Split');
        const outs = n.input.map((_, k) => `${name}:${k}`);
        g.nodes.push({
          op_type: 'Split',
          name,
          input: [dy, g.ints64(sizes)],
          output: outs,
          attribute: [int('axis', axis)],
        });
        n.input.forEach((i, k) => {
          add(i, outs[k]);
        });
        break;
      }
      case 'Resize': {
        const mode = attrStr(n, 'mode', 'nearest');
        const ctm = attrStr(n, 'coordinate_transformation_mode', 'half_pixel');
        const nm = attrStr(n, 'nearest_mode', 'round_prefer_floor');
        const scales = c.need(n.input[2], 'Resize scales');
        if (mode !== 'nearest' || ctm !== 'asymmetric' || nm !== 'floor' || scales.length !== 4)
          throw new Error('onnx autodiff: Resize only as nearest/asymmetric/floor upsampling');
        if (scales[0] !== 1 || scales[1] !== 1 || !scales.every((s) => Number.isInteger(s)))
          throw new Error('onnx autodiff: Resize needs integer spatial scales');
        const [sh, sw] = [scales[2], scales[3]];
        const pooled = emit('AveragePool', [dy], [ints('kernel_shape', [sh, sw]), ints('strides', [sh, sw])]);
        add(a, emit('Mul', [pooled, g.floats([sh * sw])]));
        break;
      }
      case 'Conv':
        convVjp(g, emit, transpose, n, dy, shapeOf, needs, add, (t) => forwardProducers.get(t));
        break;
      default:
        throw new Error(`onnx autodiff: no gradient for ${n.op_type} (${n.name})`);
    }
  }

  const grads = new Map<string, string>();
  for (const w of opts.wrt) {
    const d = gradOf(w);
    if (d !== undefined) grads.set(w, d);
  }
  return { grads, shapes };
}

type Emit = (op: string, inputs: string[], attrs?: OnnxNode['attribute']) => string;

const autoPad = (n: OnnxNode) => attrStr(n, 'auto_pad', 'NOTSET');

/**
 * A Conv's pads as [top, left, bottom, right]: its `pads`, or those SAME_UPPER / SAME_LOWER imply for
 * the static sizes (total = (out - 1) * stride + k - in; UPPER puts the odd one at the end).
 */
function explicitPads(n: OnnxNode, size: number[], out: number[], k: number[], st: number[]): number[] {
  const mode = autoPad(n);
  if (!mode.startsWith('SAME')) return attrInts(n, 'pads') ?? [0, 0, 0, 0];
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < 2; i++) {
    const total = Math.max(0, (out[i] - 1) * st[i] + k[i] - size[i]);
    const small = Math.floor(total / 2);
    begin.push(mode === 'SAME_UPPER' ? small : total - small);
    end.push(total - begin[i]);
  }
  return [...begin, ...end];
}

function convVjp(
  g: GraphBuilder,
  emit: Emit,
  transpose: (x: string, perm: number[]) => string,
  n: OnnxNode,
  dy: string,
  shapeOf: (name: string) => Shape,
  needs: (t: string) => boolean,
  add: (t: string, grad: string) => void,
  forwardProducer: (t: string) => OnnxNode | undefined,
): void {
  const [x, w, bias] = n.input;
  const xs = shapeOf(x);
  const ws = shapeOf(w).map(Number);
  const ys = shapeOf(n.output[0]);
  const [co, cig, kh, kw] = ws;
  const st = attrInts(n, 'strides') ?? [1, 1];
  const group = attrInt(n, 'group', 1);
  const dil = attrInts(n, 'dilations') ?? [1, 1];
  if (dil.some((d) => d !== 1)) throw new Error('onnx autodiff: Conv with dilation');
  if (autoPad(n) === 'VALID') throw new Error('onnx autodiff: Conv with auto_pad VALID');
  const [H, W] = [Number(xs[2]), Number(xs[3])];
  const [Ho, Wo] = [Number(ys[2]), Number(ys[3])];
  const pads = explicitPads(n, [H, W], [Ho, Wo], [kh, kw], st);

  if (bias && needs(bias)) add(bias, emit('ReduceSum', [dy, g.ints64([0, 2, 3])], [int('keepdims', 0)]));

  if (needs(x)) {
    if (group === 1 && st[0] === 1 && st[1] === 1 && pads.every((p, i) => p <= (i % 2 === 0 ? kh : kw) - 1)) {
      // W flipped spatially. When W is a Transpose of a tensor K (a tfjs-layout kernel), K is sliced
      // instead and the transposes fold into one (no copy of W in ONNX layout).
      const wp = forwardProducer(w);
      const perm = wp?.op_type === 'Transpose' ? attrInts(wp, 'perm') : undefined;
      const slice = (t: string, axes: number[]) =>
        emit('Slice', [
          t,
          g.ints64([kh - 1, kw - 1]),
          g.ints64([-kh - 1, -kw - 1]),
          g.ints64(axes),
          g.ints64([-1, -1]),
        ]);
      const flipped =
        wp && perm
          ? emit('Transpose', [slice(wp.input[0], [perm[2], perm[3]])], [ints('perm', perm)])
          : slice(w, [2, 3]);
      add(
        x,
        emit(
          'Conv',
          [dy, transpose(flipped, [1, 0, 2, 3])],
          [
            ints('kernel_shape', [kh, kw]),
            ints('pads', [kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2], kw - 1 - pads[3]]),
          ],
        ),
      );
    } else {
      const op = [
        H - st[0] * (Ho - 1) - kh + pads[0] + pads[2],
        W - st[1] * (Wo - 1) - kw + pads[1] + pads[3],
      ];
      add(
        x,
        emit(
          'ConvTranspose',
          [dy, w],
          [
            ints('kernel_shape', [kh, kw]),
            ints('strides', st),
            ints('pads', pads),
            ints('output_padding', op),
            ...(group === 1 ? [] : [int('group', group)]),
          ],
        ),
      );
    }
  }

  if (needs(w)) {
    if (group !== 1) throw new Error('onnx autodiff: weight gradient of a grouped Conv');
    const ci = cig;
    const dWt = weightGradientTaps(g, emit, x, dy, { ci, co, kh, kw, H, W, Ho, Wo, st, pads });
    add(w, transpose(dWt, [3, 2, 0, 1])); // [kh,kw,ci,co] -> [co,ci,kh,kw]
  }
}

interface ConvDims {
  ci: number;
  co: number;
  kh: number;
  kw: number;
  H: number;
  W: number;
  Ho: number;
  Wo: number;
  st: number[];
  pads: number[];
}

/**
 * dW in [kh,kw,ci,co]: dW[a,b,ci,co] = sum over n, p of x_pad[n, ci, p*s + (a,b)] * dy[n, co, p], one
 * batched GEMM per tap (K = output pixels, batch = N), summed over the batch: the formulation of the
 * hand-written graph (lib/models/autoencoder/train-graph weightGradient), for rectangular maps and kernels.
 */
function weightGradientTaps(g: GraphBuilder, emit: Emit, x: string, dy: string, d: ConvDims): string {
  const { ci, co, kh, kw, H, W, Ho, Wo, st, pads } = d;
  const [pt, pl, pb, pr] = pads;
  const taps: string[] = [];
  if (kh === 1 && kw === 1 && st[0] === 1 && st[1] === 1 && pads.every((p) => p === 0)) {
    const cols = emit('Reshape', [x, g.ints64([0, ci, Ho * Wo])]);
    const dyT = emit(
      'Transpose',
      [emit('Reshape', [dy, g.ints64([0, co, Ho * Wo])])],
      [ints('perm', [0, 2, 1])],
    );
    taps.push(emit('MatMul', [cols, dyT]));
  } else if (st[0] === 1 && st[1] === 1) {
    const wp = W + pl + pr;
    const len = Ho * wp;
    const rows = H + pt + pb + 1; // one extra bottom row keeps the last tap's window inside
    const flat = emit('Reshape', [
      emit('Pad', [x, g.ints64([0, 0, pt, pl, 0, 0, pb + 1, pr])]),
      g.ints64([0, ci, rows * wp]),
    ]);
    const dyWide = wp > Wo ? emit('Pad', [dy, g.ints64([0, 0, 0, 0, 0, 0, 0, wp - Wo])]) : dy;
    const dyFlat = emit('Reshape', [dyWide, g.ints64([0, co, len])]);
    const flatLen = rows * wp;
    for (let a = 0; a < kh; a++)
      for (let b = 0; b < kw; b++) {
        const off = a * wp + b;
        if (co < ci) {
          const shifted = emit('Pad', [dyFlat, g.ints64([0, 0, off, 0, 0, flatLen - off - len])]);
          taps.push(emit('MatMul', [flat, emit('Transpose', [shifted], [ints('perm', [0, 2, 1])])]));
        } else {
          const cols = emit('Slice', [flat, g.ints64([off]), g.ints64([off + len]), g.ints64([2])]);
          taps.push(emit('MatMul', [cols, emit('Transpose', [dyFlat], [ints('perm', [0, 2, 1])])]));
        }
      }
  } else {
    const xp = emit('Pad', [x, g.ints64([0, 0, pt, pl, 0, 0, pb, pr])]);
    const dyT = emit(
      'Transpose',
      [emit('Reshape', [dy, g.ints64([0, co, Ho * Wo])])],
      [ints('perm', [0, 2, 1])],
    );
    for (let a = 0; a < kh; a++)
      for (let b = 0; b < kw; b++) {
        const slice = emit('Slice', [
          xp,
          g.ints64([a, b]),
          g.ints64([a + st[0] * (Ho - 1) + 1, b + st[1] * (Wo - 1) + 1]),
          g.ints64([2, 3]),
          g.ints64(st),
        ]);
        const cols = emit('Reshape', [slice, g.ints64([0, ci, Ho * Wo])]);
        taps.push(emit('MatMul', [cols, dyT]));
      }
  }
  const stacked = taps.length === 1 ? taps[0] : emit('Concat', taps, [int('axis', 1)]); // [N, kh*kw*ci, co]
  const summed = emit('ReduceSum', [stacked, g.ints64([0])], [int('keepdims', 0)]);
  return emit('Reshape', [summed, g.ints64([kh, kw, ci, co])]);
}

/**
 * The nodes needed to compute `outputs` from `available` tensors (graph inputs and initializers), in
 * a topological order (`nodes` must be one): forward nodes whose results the backward nodes refer to
 * are kept, unused nodes are dropped. Throws when an output cannot be computed.
 */
export function extractGraph(
  nodes: OnnxNode[],
  outputs: string[],
  available: Set<string>,
  deferBefore = 0,
): OnnxNode[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    for (const o of n.output) producer.set(o, i);
  });
  const keep = new Set<number>();
  const stack = [...outputs];
  const seen = new Set<string>();
  while (stack.length) {
    const t = stack.pop() as string;
    if (t === '' || seen.has(t)) continue;
    seen.add(t);
    if (available.has(t)) continue;
    const i = producer.get(t);
    if (i === undefined) throw new Error(`onnx autodiff: ${t} is neither available nor computed`);
    if (keep.has(i)) continue;
    keep.add(i);
    stack.push(...nodes[i].input);
  }
  // Kept nodes before index `deferBefore` (the forward nodes a backward graph recomputes) are placed
  // just before their first consumer, as a hand-written graph computes them: ONNX Runtime runs nodes
  // in this order, so their buffers are not all alive from the start.
  const order: number[] = [];
  const placed = new Set<number>();
  const place = (i: number) => {
    if (placed.has(i)) return;
    placed.add(i);
    for (const t of nodes[i].input) {
      const j = producer.get(t);
      if (j !== undefined && keep.has(j) && !available.has(t)) place(j);
    }
    order.push(i);
  };
  for (let i = 0; i < nodes.length; i++) if (keep.has(i) && i >= deferBefore) place(i);
  for (let i = 0; i < nodes.length; i++) if (keep.has(i)) place(i);
  return order.map((i) => nodes[i]);
}

/** The initializers that `nodes` use (a builder's constants for dropped nodes would make ONNX Runtime warn). */
export function usedInitializers(nodes: OnnxNode[], initializers: OnnxTensor[]): OnnxTensor[] {
  const used = new Set(nodes.flatMap((n) => n.input));
  return initializers.filter((t) => used.has(t.name));
}

/** Renames a tensor everywhere in `nodes` (e.g. a gradient to the graph output name it must have). */
export function renameTensor(nodes: OnnxNode[], from: string, to: string): void {
  for (const n of nodes) {
    n.input = n.input.map((i) => (i === from ? to : i));
    n.output = n.output.map((o) => (o === from ? to : o));
  }
}

export interface BackwardModelOptions {
  name: string;
  /** Appends the forward nodes (and their constants) to the builder. */
  forward: (g: GraphBuilder) => void;
  /** Shapes of the forward graph's inputs (string dims symbolic). */
  inputShapes: Record<string, Shape>;
  /** Forward tensor -> the backward-graph input that carries dLoss/dTensor. */
  seeds: Record<string, string>;
  /** Tensor to differentiate -> the name of its gradient output. */
  wrt: Record<string, string>;
  /**
   * The backward graph's inputs (seeds, and the forward tensors it is fed rather than recomputes, such
   * as saved activations); forward nodes computing anything else it needs are kept in the graph.
   */
  inputs: ReturnType<typeof valueInfo>[];
  outputs: ReturnType<typeof valueInfo>[];
  /** Forward tensors the model outputs too (e.g. the loss value next to its gradient). */
  extraOutputs?: string[];
}

/**
 * A backward graph as an ONNX model: the forward nodes differentiated, the gradients named as asked,
 * only the nodes they need (forward ones recomputed from the inputs just before their first use).
 */
export function buildBackwardModel(o: BackwardModelOptions): Uint8Array {
  const g = new GraphBuilder();
  o.forward(g);
  const forward = g.nodes.splice(0, g.nodes.length);
  const { grads } = differentiate(g, {
    nodes: forward,
    initializers: g.initializers,
    inputShapes: o.inputShapes,
    seeds: o.seeds,
    wrt: Object.keys(o.wrt),
  });
  const backward = g.nodes.splice(0, g.nodes.length);
  const all = [...forward, ...backward];
  const produced = new Set(backward.flatMap((n) => n.output));
  for (const [t, name] of Object.entries(o.wrt)) {
    const d = grads.get(t);
    if (!d) throw new Error(`onnx autodiff: no gradient reaches ${t}`);
    if (produced.has(d)) renameTensor(backward, d, name);
    else all.push({ op_type: 'Identity', name: `Identity_${name}`, input: [d], output: [name] });
  }
  const available = new Set([...o.inputs.map((i) => i.name), ...g.initializers.map((t) => t.name)]);
  const nodes = extractGraph(
    all,
    [...(o.extraOutputs ?? []), ...Object.values(o.wrt)],
    available,
    forward.length,
  );
  return encodeModel({
    name: o.name,
    nodes,
    initializers: usedInitializers(nodes, g.initializers),
    inputs: o.inputs,
    outputs: o.outputs,
  });
}

/**
 * Data-movement kernels for the wasm backend, replacing ones that profiling showed slow in a
 * training step of the reference U-Net (docs/BENCHMARKS.md): the originals copy through per-pixel
 * Slice calls (SplitV, the gradient of every skip concat), generic strided loops (Concat on the
 * channel axis) or full copies (Identity, used for every gradient pass-through). These are plain
 * loops over the wasm heap; any case they do not cover goes to the original kernel.
 */
import * as tf from '@tensorflow/tfjs';
import {
  heapF32,
  type KernelArgs,
  type KernelFn,
  originalKernel,
  replaceKernel,
  type TensorInfo,
} from './wasm-util';

function fallback(name: string, args: KernelArgs): TensorInfo | TensorInfo[] {
  const f = originalKernel(name);
  if (!f) throw new Error(`no original wasm kernel '${name}'`);
  return f(args);
}

/** Identity aliases its input (as the cpu and webgl backends do) instead of copying it. */
const identity: KernelFn = ({ inputs, backend }) => {
  const { x } = inputs;
  if (x.dtype === 'string') return fallback('Identity', { inputs, backend });
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
};

/** Concat along the last (channel) axis of float32 tensors: one interleaving pass. */
const concat: KernelFn = (args) => {
  const { backend } = args;
  const xs = args.inputs as unknown as TensorInfo[];
  const rank = xs[0].shape.length;
  const axis = tf.util.parseAxisParam(args.attrs?.axis as number, xs[0].shape)[0];
  if (rank < 2 || axis !== rank - 1 || xs.some((t) => t.dtype !== 'float32')) return fallback('Concat', args);
  const widths = xs.map((t) => t.shape[rank - 1]);
  const total = widths.reduce((a, b) => a + b, 0);
  const rows = tf.util.sizeFromShape(xs[0].shape.slice(0, -1));
  const out = backend.makeOutput([...xs[0].shape.slice(0, -1), total], 'float32');
  const o = heapF32(backend, out);
  let off = 0;
  xs.forEach((t, i) => {
    const w = widths[i];
    const src = heapF32(backend, t);
    for (let r = 0; r < rows; r++) {
      const s = r * w;
      const d = r * total + off;
      for (let c = 0; c < w; c++) o[d + c] = src[s + c];
    }
    off += w;
  });
  return out;
};

/** SplitV along the last axis (the gradient of a channel concat). */
const splitV: KernelFn = (args) => {
  const { backend } = args;
  const { x } = args.inputs;
  const rank = x.shape.length;
  const axis = tf.util.parseAxisParam(args.attrs?.axis as number, x.shape)[0];
  if (rank < 2 || axis !== rank - 1 || x.dtype !== 'float32') return fallback('SplitV', args);
  const sizes = tf.backend_util.prepareSplitSize(
    x as unknown as tf.Tensor,
    args.attrs?.numOrSizeSplits as number | number[],
    axis,
  );
  const total = x.shape[rank - 1];
  const rows = tf.util.sizeFromShape(x.shape.slice(0, -1));
  const outs = sizes.map((w) => backend.makeOutput([...x.shape.slice(0, -1), w], 'float32'));
  const src = heapF32(backend, x);
  let off = 0;
  outs.forEach((out, i) => {
    const w = sizes[i];
    const o = heapF32(backend, out);
    for (let r = 0; r < rows; r++) {
      const s = r * total + off;
      const d = r * w;
      for (let c = 0; c < w; c++) o[d + c] = src[s + c];
    }
    off += w;
  });
  return outs;
};

/** Sum over all leading axes (bias gradients) or over everything (loss means), float32. */
const sum: KernelFn = (args) => {
  const { backend } = args;
  const { x } = args.inputs;
  const rank = x.shape.length;
  if (x.dtype !== 'float32' || rank < 1) return fallback('Sum', args);
  const axes = tf.util.parseAxisParam(args.attrs?.axis as number | number[], x.shape).sort((a, b) => a - b);
  const keepDims = Boolean(args.attrs?.keepDims);
  const leading = axes.length === rank - 1 && axes.every((a, i) => a === i);
  const all = axes.length === rank && axes.every((a, i) => a === i);
  if (!leading && !all) return fallback('Sum', args);
  const c = all ? 1 : x.shape[rank - 1];
  const rows = tf.util.sizeFromShape(x.shape) / c;
  const acc = new Float64Array(c);
  const src = heapF32(backend, x);
  for (let r = 0; r < rows; r++) {
    const s = r * c;
    for (let k = 0; k < c; k++) acc[k] += src[s + k];
  }
  const shape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : all ? [] : [c];
  const out = backend.makeOutput(shape, 'float32');
  heapF32(backend, out).set(acc);
  return out;
};

export function registerWasmDataKernels(): void {
  replaceKernel('Identity', identity);
  replaceKernel('Concat', concat);
  replaceKernel('SplitV', splitV);
  replaceKernel('Sum', sum);
}

/**
 * Training kernels for the tfjs wasm backend.
 *
 * tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter (training any conv net fails) and a naive
 * Conv2DBackpropInput (seconds per step). Both are rebuilt here from the backend's fast forward
 * Conv2D (XNNPACK) plus cheap data-movement kernels, calling the wasm kernel functions directly on
 * TensorInfos: no engine tensors are created, so nothing is tracked, taped or leaked; every
 * intermediate is released with `backend.disposeData`.
 *
 * dX (Conv2DBackpropInput), stride s: the transposed convolution is split by output phase. Input
 * pixel iy = s*q + r only receives taps ky ≡ (r + padTop) mod s, so each of the s*s phases is a
 * small stride-1 correlation over dy. All phases read dy through the same window, so they become ONE
 * stride-1 conv whose s*s output-channel groups hold the (zero-embedded) phase filters, followed by
 * DepthToSpace to interleave the phases. For 3x3/stride 2 that is a 2x2 window (16 taps instead of
 * the 36 of the textbook zero-dilated dy), with no dilated copy of dy in memory.
 *
 * dW (Conv2DBackpropFilter): see `conv2DBackpropFilter` below.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type TensorInfo = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type KernelFn = (args: {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs?: Attrs;
}) => TensorInfo;

const BACKEND = 'wasm';
let registered = false;
/** The backend's own implementations, kept as fallbacks for cases our kernels do not cover. */
let nativeBackpropInput: KernelFn | undefined;

function kernel(name: string): KernelFn {
  const cfg = tf.getKernel(name, BACKEND);
  if (!cfg) throw new Error(`wasm backend has no '${name}' kernel`);
  return cfg.kernelFunc as unknown as KernelFn;
}

function run(
  backend: BackendWasm,
  name: string,
  inputs: Record<string, TensorInfo>,
  attrs: Attrs = {},
): TensorInfo {
  return kernel(name)({ inputs, backend, attrs });
}

function dispose(backend: BackendWasm, ...infos: TensorInfo[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}

/** Float32 view on the wasm heap of a tensor the backend owns (valid until the next allocation). */
function heapF32(backend: BackendWasm, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

interface ConvGeometry {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  fh: number;
  fw: number;
  sh: number;
  sw: number;
  ho: number;
  wo: number;
  padTop: number;
  padLeft: number;
}

function geometry(xShape: number[], filterShape: number[], attrs: Attrs): ConvGeometry | null {
  const dataFormat = (attrs.dataFormat as string | undefined) ?? 'NHWC';
  const dilations = (attrs.dilations as number | [number, number] | undefined) ?? 1;
  const dil = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (dataFormat !== 'NHWC' || dil[0] !== 1 || dil[1] !== 1) return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same' | 'valid',
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
  return {
    n: info.batchSize,
    h: info.inHeight,
    w: info.inWidth,
    ci: info.inChannels,
    co: info.outChannels,
    fh: info.filterHeight,
    fw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    ho: info.outHeight,
    wo: info.outWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/**
 * One spatial axis of the phase decomposition: for each phase r and filter tap k, the window
 * position t at which the tap reads dy (or -1). `lo` is the dy offset of window position 0.
 */
interface AxisPlan {
  phases: number;
  outPerPhase: number;
  window: number;
  lo: number;
  tapPos: number[][]; // [r][k] -> t or -1
}

function planAxis(size: number, outSize: number, f: number, s: number, pad: number): AxisPlan {
  const offsets: { r: number; k: number; off: number }[] = [];
  for (let r = 0; r < s; r++) {
    const k0 = (((r + pad) % s) + s) % s;
    const c = (r + pad - k0) / s;
    for (let k = k0, j = 0; k < f; k += s, j++) offsets.push({ r, k, off: c - j });
  }
  const lo = offsets.length ? Math.min(...offsets.map((o) => o.off)) : 0;
  const hi = offsets.length ? Math.max(...offsets.map((o) => o.off)) : 0;
  const tapPos = Array.from({ length: s }, () => new Array<number>(f).fill(-1));
  for (const o of offsets) tapPos[o.r][o.k] = o.off - lo;
  void outSize;
  return { phases: s, outPerPhase: Math.ceil(size / s), window: hi - lo + 1, lo, tapPos };
}

/** Pads (positive) or crops (negative) dy along H and W so that a 'valid' conv reads the window. */
function padOrCrop(
  backend: BackendWasm,
  dy: TensorInfo,
  top: number,
  bottom: number,
  left: number,
  right: number,
) {
  let cur = dy;
  const owned: TensorInfo[] = [];
  const [n, h, w, c] = dy.shape;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const bt = Math.max(0, -top);
    const bl = Math.max(0, -left);
    const size = [n, h - bt - Math.max(0, -bottom), w - bl - Math.max(0, -right), c];
    cur = run(backend, 'Slice', { x: cur }, { begin: [0, bt, bl, 0], size });
    owned.push(cur);
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    const paddings = [
      [0, 0],
      [Math.max(0, top), Math.max(0, bottom)],
      [Math.max(0, left), Math.max(0, right)],
      [0, 0],
    ];
    cur = run(backend, 'PadV2', { x: cur }, { paddings, constantValue: 0 });
    owned.push(cur);
  }
  return { out: cur, owned };
}

function conv2DBackpropInput(args: {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs?: Attrs;
}) {
  const { inputs, backend } = args;
  const attrs = args.attrs ?? {};
  const dy = inputs.dy;
  const filter = inputs.filter;
  const inputShape = attrs.inputShape as number[];
  const g = geometry(inputShape, filter.shape, attrs);
  if (!g || g.sh !== g.sw) {
    if (!nativeBackpropInput) throw new Error('Conv2DBackpropInput: unsupported configuration');
    return nativeBackpropInput(args);
  }
  const s = g.sh;
  const ph = planAxis(g.h, g.ho, g.fh, s, g.padTop);
  const pw = planAxis(g.w, g.wo, g.fw, s, g.padLeft);
  const groups = s * s;
  const outC = groups * g.ci;

  // Combined phase filter [th, tw, co, s*s*ci], built on the JS side (filters are small).
  const w = heapF32(backend, filter).slice();
  const comb = backend.makeOutput([ph.window, pw.window, g.co, outC], 'float32');
  const cv = heapF32(backend, comb);
  cv.fill(0);
  for (let ry = 0; ry < s; ry++) {
    for (let rx = 0; rx < s; rx++) {
      const gBase = (ry * s + rx) * g.ci;
      for (let ky = 0; ky < g.fh; ky++) {
        const ty = ph.tapPos[ry][ky];
        if (ty < 0) continue;
        for (let kx = 0; kx < g.fw; kx++) {
          const tx = pw.tapPos[rx][kx];
          if (tx < 0) continue;
          for (let c = 0; c < g.ci; c++) {
            const src = ((ky * g.fw + kx) * g.ci + c) * g.co;
            const dst = (ty * pw.window + tx) * g.co * outC + gBase + c;
            for (let o = 0; o < g.co; o++) cv[dst + o * outC] = w[src + o];
          }
        }
      }
    }
  }

  // Window rows needed: dy[lo .. outPerPhase-1 + lo + window-1].
  const top = -ph.lo;
  const bottom = ph.outPerPhase - 1 + ph.lo + ph.window - 1 - (g.ho - 1);
  const left = -pw.lo;
  const right = pw.outPerPhase - 1 + pw.lo + pw.window - 1 - (g.wo - 1);
  const { out: dyp, owned } = padOrCrop(backend, dy, top, bottom, left, right);
  const phasesOut = run(
    backend,
    'Conv2D',
    { x: dyp, filter: comb },
    { strides: [1, 1], pad: 'valid', dilations: [1, 1], dataFormat: 'NHWC' },
  );
  dispose(backend, comb, ...owned);
  if (s === 1) return phasesOut;
  const interleaved = run(backend, 'DepthToSpace', { x: phasesOut }, { blockSize: s, dataFormat: 'NHWC' });
  dispose(backend, phasesOut);
  const [, fullH, fullW] = interleaved.shape;
  if (fullH === g.h && fullW === g.w) return interleaved;
  const cropped = run(
    backend,
    'Slice',
    { x: interleaved },
    { begin: [0, 0, 0, 0], size: [g.n, g.h, g.w, g.ci] },
  );
  dispose(backend, interleaved);
  return cropped;
}

/**
 * dW[ky,kx,ci,co] = sum_{n,oy,ox} x[n, oy*s+ky-pt, ox*s+kx-pl, ci] * dy[n,oy,ox,co].
 * A forward conv with batch and channels swapped: x as [ci,H,W,N] convolved with dy as the "filter"
 * [Ho,Wo,N,co], dilation = stride -> [ci,fh,fw,co] -> transpose. Alternatives measured and rejected
 * (docs/BENCHMARKS.md): per-tap GEMMs over zero-copy row views and im2col + one GEMM are dominated by
 * XNNPACK re-packing the large, freshly computed operand on every call.
 */
function conv2DBackpropFilter(args: {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs?: Attrs;
}) {
  const { inputs, backend } = args;
  const attrs = args.attrs ?? {};
  const { x, dy } = inputs;
  const filterShape = attrs.filterShape as number[];
  const g = geometry(x.shape, filterShape, attrs);
  if (!g) throw new Error('Conv2DBackpropFilter (wasm): only NHWC without dilation is supported');
  // Rows/cols of x read: from -pad to (out-1)*s + f-1 - pad.
  const top = g.padTop;
  const bottom = (g.ho - 1) * g.sh + g.fh - 1 - g.padTop - (g.h - 1);
  const left = g.padLeft;
  const right = (g.wo - 1) * g.sw + g.fw - 1 - g.padLeft - (g.w - 1);
  const xT = run(backend, 'Transpose', { x }, { perm: [3, 1, 2, 0] }); // [ci, H, W, N]
  const { out: xp, owned } = padOrCrop(backend, xT, top, bottom, left, right);
  const dyT = run(backend, 'Transpose', { x: dy }, { perm: [1, 2, 0, 3] }); // [Ho, Wo, N, co]
  const r = run(
    backend,
    'Conv2D',
    { x: xp, filter: dyT },
    { strides: [1, 1], pad: 'valid', dilations: [g.sh, g.sw], dataFormat: 'NHWC' },
  ); // [ci, fh, fw, co]
  dispose(backend, xT, dyT, ...owned);
  const dw = run(backend, 'Transpose', { x: r }, { perm: [1, 2, 0, 3] });
  dispose(backend, r);
  return dw;
}

/** Source index of output index `o` in tfjs' nearest-neighbour resize (same formula as the forward op). */
function nearestSource(
  o: number,
  inSize: number,
  outSize: number,
  alignCorners: boolean,
  halfPixel: boolean,
): number {
  const effIn = alignCorners && outSize > 1 ? inSize - 1 : inSize;
  const effOut = alignCorners && outSize > 1 ? outSize - 1 : outSize;
  const frac = (effIn / effOut) * (halfPixel ? o + 0.5 : o);
  const src = Math.min(inSize - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
  return halfPixel ? Math.max(0, src) : src;
}

/**
 * ResizeNearestNeighborGrad: dx[i] = sum of dy over the output pixels whose nearest source is i.
 * The wasm backend's own kernel disagrees with the cpu backend and with this definition (measured:
 * relative error ~1 on a 2x upsampling), which silently corrupts every gradient below a U-Net's
 * upsampling layers. The common 2x/integer case (no align-corners, no half-pixel) is sum pooling,
 * run as XNNPACK AvgPool x k*k; anything else uses a direct scatter-add on the heap.
 */
function resizeNearestNeighborGrad(args: {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs?: Attrs;
}) {
  const { inputs, backend } = args;
  const attrs = args.attrs ?? {};
  const { images, dy } = inputs;
  const alignCorners = Boolean(attrs.alignCorners);
  const halfPixel = Boolean(attrs.halfPixelCenters);
  const [n, inH, inW, c] = images.shape;
  const [, outH, outW] = dy.shape;
  const fy = outH / inH;
  const fx = outW / inW;
  if (!alignCorners && !halfPixel && Number.isInteger(fy) && Number.isInteger(fx)) {
    const pooled = run(
      backend,
      'AvgPool',
      { x: dy },
      { filterSize: [fy, fx], strides: [fy, fx], pad: 'valid', dimRoundingMode: undefined },
    );
    const k = backend.makeOutput([], 'float32');
    heapF32(backend, k)[0] = fy * fx;
    const out = run(backend, 'Multiply', { a: pooled, b: k });
    dispose(backend, pooled, k);
    return out;
  }
  const srcY = Array.from({ length: outH }, (_, o) => nearestSource(o, inH, outH, alignCorners, halfPixel));
  const srcX = Array.from({ length: outW }, (_, o) => nearestSource(o, inW, outW, alignCorners, halfPixel));
  const out = backend.makeOutput([n, inH, inW, c], 'float32');
  const dx = heapF32(backend, out);
  const g = heapF32(backend, dy);
  dx.fill(0);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < outH; y++)
      for (let x = 0; x < outW; x++) {
        const src = ((b * outH + y) * outW + x) * c;
        const dst = ((b * inH + srcY[y]) * inW + srcX[x]) * c;
        for (let ch = 0; ch < c; ch++) dx[dst + ch] += g[src + ch];
      }
  return out;
}

/**
 * Registers the training kernels on the wasm backend. Idempotent; safe to call before or after
 * `tf.setBackend('wasm')` (kernels are looked up per call).
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  const existing = tf.getKernel('Conv2DBackpropInput', BACKEND);
  if (existing) {
    nativeBackpropInput = existing.kernelFunc as unknown as KernelFn;
    tf.unregisterKernel('Conv2DBackpropInput', BACKEND);
  }
  tf.registerKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: BACKEND,
    kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
  });
  for (const name of ['Conv2DBackpropFilter', 'ResizeNearestNeighborGrad']) {
    if (tf.getKernel(name, BACKEND)) tf.unregisterKernel(name, BACKEND);
  }
  tf.registerKernel({
    kernelName: 'ResizeNearestNeighborGrad',
    backendName: BACKEND,
    kernelFunc: resizeNearestNeighborGrad as unknown as tf.KernelFunc,
  });
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: BACKEND,
    kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
  });
}

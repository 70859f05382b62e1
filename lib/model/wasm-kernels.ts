/**
 * Training kernels for the tfjs wasm backend.
 *
 * tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter (training any conv net fails) and a naive
 * Conv2DBackpropInput (seconds per step). Both are rebuilt here from the backend's fast forward
 * Conv2D (XNNPACK) plus single-pass layout loops over the wasm heap, calling the wasm kernel
 * functions directly on TensorInfos: no engine tensors are created, so nothing is tracked, taped or
 * leaked; every intermediate is released with `backend.disposeData`. The wasm
 * ResizeNearestNeighborGrad is replaced too (sum pooling), and `registerWasmDataKernels` swaps in
 * faster Concat/SplitV/Sum/Identity (see docs/BENCHMARKS.md for the measurements).
 *
 * dX (Conv2DBackpropInput), stride s: the transposed convolution is split by output phase. Input
 * pixel iy = s*q + r only receives taps ky ≡ (r + padTop) mod s, so each of the s*s phases is a
 * small stride-1 correlation over dy. All phases read dy through the same window, so they become ONE
 * stride-1 conv whose s*s output-channel groups hold the (zero-embedded) phase filters, followed by
 * one interleaving pass (DepthToSpace + crop) to put the phases in place. For 3x3/stride 2 that is a
 * 2x2 window (16 taps per pixel instead of the 36 of the textbook zero-dilated dy), with no dilated
 * copy of dy in memory.
 *
 * dW (Conv2DBackpropFilter): see `conv2DBackpropFilter` below.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { registerWasmDataKernels } from './wasm-data-kernels';
import {
  type Attrs,
  dispose,
  heapF32,
  type KernelArgs,
  type KernelFn,
  originalKernel,
  replaceKernel,
  run,
  type TensorInfo,
} from './wasm-util';

let registered = false;

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

/** Crops rows/cols where a required padding is negative; returns the remaining (>= 0) padding. */
function cropNegative(
  backend: BackendWasm,
  x: TensorInfo,
  top: number,
  bottom: number,
  left: number,
  right: number,
) {
  if (top >= 0 && bottom >= 0 && left >= 0 && right >= 0) {
    return { out: x, owned: [] as TensorInfo[], pads: [top, bottom, left, right] };
  }
  const [n, h, w, c] = x.shape;
  const bt = Math.max(0, -top);
  const bl = Math.max(0, -left);
  const size = [n, h - bt - Math.max(0, -bottom), w - bl - Math.max(0, -right), c];
  const out = run(backend, 'Slice', { x }, { begin: [0, bt, bl, 0], size });
  return { out, owned: [out], pads: [top, bottom, left, right].map((p) => Math.max(0, p)) };
}

/** Stride-1 'valid' conv with explicit zero padding (XNNPACK pads on the fly: no padded copy). */
function convExplicit(
  backend: BackendWasm,
  x: TensorInfo,
  filter: TensorInfo,
  pads: number[],
  dilations: [number, number] = [1, 1],
): TensorInfo {
  const [t, b, l, r] = pads;
  return run(
    backend,
    'Conv2D',
    { x, filter },
    {
      strides: [1, 1],
      pad: [
        [0, 0],
        [t, b],
        [l, r],
        [0, 0],
      ],
      dilations,
      dataFormat: 'NHWC',
    },
  );
}

/**
 * Interleaves the s*s phase outputs [N, Hq, Wq, s*s*ci] into dx [N, H, W, ci] (DepthToSpace + crop
 * in one pass; the wasm DepthToSpace kernel alone cost more than the convolution it follows).
 */
function interleavePhases(backend: BackendWasm, ph: TensorInfo, s: number, h: number, w: number, ci: number) {
  const [n, hq, wq] = ph.shape;
  const out = backend.makeOutput([n, h, w, ci], 'float32');
  const src = heapF32(backend, ph);
  const dst = heapF32(backend, out);
  const g = s * s * ci;
  for (let b = 0; b < n; b++)
    for (let qy = 0; qy < hq; qy++)
      for (let ry = 0; ry < s; ry++) {
        const y = qy * s + ry;
        if (y >= h) break;
        for (let qx = 0; qx < wq; qx++) {
          const sBase = ((b * hq + qy) * wq + qx) * g + ry * s * ci;
          for (let rx = 0; rx < s; rx++) {
            const x = qx * s + rx;
            if (x >= w) break;
            const so = sBase + rx * ci;
            const d = ((b * h + y) * w + x) * ci;
            for (let c = 0; c < ci; c++) dst[d + c] = src[so + c];
          }
        }
      }
  return out;
}

function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const attrs = args.attrs ?? {};
  const dy = inputs.dy;
  const filter = inputs.filter;
  const inputShape = attrs.inputShape as number[];
  const g = geometry(inputShape, filter.shape, attrs);
  if (!g || g.sh !== g.sw) {
    const native = originalKernel('Conv2DBackpropInput');
    if (!native) throw new Error('Conv2DBackpropInput: unsupported configuration');
    return native(args) as TensorInfo;
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
  const { out: dyc, owned, pads } = cropNegative(backend, dy, top, bottom, left, right);
  const phasesOut = convExplicit(backend, dyc, comb, pads);
  dispose(backend, comb, ...owned);
  if (s === 1) return phasesOut;
  const dx = interleavePhases(backend, phasesOut, s, g.h, g.w, g.ci);
  dispose(backend, phasesOut);
  return dx;
}

/**
 * dW[ky,kx,ci,co] = sum_{n,oy,ox} x[n, oy*s+ky-pt, ox*s+kx-pl, ci] * dy[n,oy,ox,co].
 * A forward conv with batch and channels swapped: x as [ci,H,W,N] convolved with dy as the "filter"
 * [Ho,Wo,N,co], dilation = stride -> [ci,fh,fw,co] -> [fh,fw,ci,co]. The layout changes are single
 * JS passes over the heap (the wasm Transpose and PadV2 kernels were several times slower).
 * Alternatives measured and rejected are in docs/BENCHMARKS.md.
 */
/**
 * Images per batch-as-channels conv in dW. Chunking bounds the transient copies (x transposed and
 * padded, dy transposed, XNNPACK's packed filter and indirection buffer) to what a batch of 8 needs:
 * at batch 32 an unchunked dW of the first decoder layer allocated ~300 MB at once.
 */
const DW_CHUNK = 8;

function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const attrs = args.attrs ?? {};
  const { x, dy } = inputs;
  const filterShape = attrs.filterShape as number[];
  const g = geometry(x.shape, filterShape, attrs);
  if (!g) throw new Error('Conv2DBackpropFilter (wasm): only NHWC without dilation is supported');
  const { n, h, w, ci, co, ho, wo } = g;
  // Rows/cols of x read: -pad .. (out-1)*s + f-1 - pad.
  const hp = (ho - 1) * g.sh + g.fh;
  const wp = (wo - 1) * g.sw + g.fw;
  const taps = g.fh * g.fw;
  const acc = new Float32Array(ci * taps * co); // [ci, fh, fw, co], summed over chunks
  for (let b0 = 0; b0 < n; b0 += DW_CHUNK) {
    const nc = Math.min(DW_CHUNK, n - b0);
    const xT = backend.makeOutput([ci, hp, wp, nc], 'float32'); // padded, cropped, transposed x
    const dyT = backend.makeOutput([ho, wo, nc, co], 'float32');
    const src = heapF32(backend, x);
    const dst = heapF32(backend, xT);
    dst.fill(0);
    const y0 = Math.max(0, -g.padTop);
    const y1 = Math.min(h, hp - g.padTop);
    const x0 = Math.max(0, -g.padLeft);
    const x1 = Math.min(w, wp - g.padLeft);
    const planeStride = hp * wp * nc;
    // Pixel-major loops: each source pixel's ci values are read contiguously and each destination
    // plane receives nc consecutive batch entries (measured ~1.5x faster than batch-major).
    for (let yy = y0; yy < y1; yy++)
      for (let xx = x0; xx < x1; xx++) {
        const pix = ((yy + g.padTop) * wp + (xx + g.padLeft)) * nc;
        for (let b = 0; b < nc; b++) {
          const so = (((b0 + b) * h + yy) * w + xx) * ci;
          const d = pix + b;
          for (let c = 0; c < ci; c++) dst[d + c * planeStride] = src[so + c];
        }
      }
    const gsrc = heapF32(backend, dy);
    const gdst = heapF32(backend, dyT);
    for (let b = 0; b < nc; b++)
      for (let p = 0; p < ho * wo; p++) {
        const so = ((b0 + b) * ho * wo + p) * co;
        const d = (p * nc + b) * co;
        for (let o = 0; o < co; o++) gdst[d + o] = gsrc[so + o];
      }
    const r = run(
      backend,
      'Conv2D',
      { x: xT, filter: dyT },
      { strides: [1, 1], pad: 'valid', dilations: [g.sh, g.sw], dataFormat: 'NHWC' },
    ); // [ci, fh, fw, co]
    dispose(backend, xT, dyT);
    const rs = heapF32(backend, r);
    for (let i = 0; i < acc.length; i++) acc[i] += rs[i];
    dispose(backend, r);
  }
  const dw = backend.makeOutput([g.fh, g.fw, ci, co], 'float32');
  const out = heapF32(backend, dw);
  for (let c = 0; c < ci; c++)
    for (let k = 0; k < taps; k++) {
      const so = (c * taps + k) * co;
      const d = (k * ci + c) * co;
      for (let o = 0; o < co; o++) out[d + o] = acc[so + o];
    }
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
 * Registers the training kernels (and the faster data-movement kernels) on the wasm backend.
 * Idempotent; safe to call before or after `tf.setBackend('wasm')` (kernels are looked up per call).
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  replaceKernel('Conv2DBackpropInput', conv2DBackpropInput as KernelFn);
  replaceKernel('Conv2DBackpropFilter', conv2DBackpropFilter as KernelFn);
  replaceKernel('ResizeNearestNeighborGrad', resizeNearestNeighborGrad as KernelFn);
  registerWasmDataKernels();
}

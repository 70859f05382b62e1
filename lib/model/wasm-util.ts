/**
 * Helpers for kernels implemented on top of the tfjs wasm backend: calling other wasm kernels
 * directly on TensorInfos (no engine tensors, nothing tracked or taped) and reading/writing tensor
 * memory on the wasm heap.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type TensorInfo = tf.TensorInfo;
export type Attrs = Record<string, unknown>;
export interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs?: Attrs;
}
export type KernelFn = (args: KernelArgs) => TensorInfo | TensorInfo[];

export const WASM = 'wasm';

/** The backend's own kernel implementations, captured before we replace any of them. */
const originals = new Map<string, KernelFn>();

export function originalKernel(name: string): KernelFn | undefined {
  return originals.get(name);
}

/** Replaces (or adds) a wasm kernel, keeping the original reachable through `originalKernel`. */
export function replaceKernel(name: string, fn: KernelFn): void {
  const existing = tf.getKernel(name, WASM);
  if (existing) {
    if (!originals.has(name)) originals.set(name, existing.kernelFunc as unknown as KernelFn);
    tf.unregisterKernel(name, WASM);
  }
  // Keep the original's setupFunc: the backend runs it at initialisation and the original (our
  // fallback) needs the wasm function bindings it creates.
  tf.registerKernel({
    kernelName: name,
    backendName: WASM,
    kernelFunc: fn as unknown as tf.KernelFunc,
    setupFunc: existing?.setupFunc,
  });
}

export function run(
  backend: BackendWasm,
  name: string,
  inputs: Record<string, TensorInfo>,
  attrs: Attrs = {},
): TensorInfo {
  const cfg = tf.getKernel(name, WASM);
  if (!cfg) throw new Error(`wasm backend has no '${name}' kernel`);
  return (cfg.kernelFunc as unknown as KernelFn)({ inputs, backend, attrs }) as TensorInfo;
}

export function dispose(backend: BackendWasm, ...infos: TensorInfo[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}

/** Float32 view on the wasm heap of a tensor (valid until the next heap allocation may grow memory). */
export function heapF32(backend: BackendWasm, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

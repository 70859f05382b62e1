/**
 * Compute backend selection. Accelerated backends are optional packages the user may install
 * (never dependencies: tfjs-node cannot even be installed on machines without Google Storage
 * access); the always-available fallback is wasm with our training kernels. The pure-JS `cpu`
 * backend is only used when explicitly forced: one training step of the reference model takes
 * over 10 minutes on it.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import type { TrainingConfig } from '../config/schema';
import { UserError } from '../util/errors';
import { registerWasmTrainingKernels } from './wasm-kernels';

export type BackendPreference = TrainingConfig['backend'];
export type BackendPurpose = 'train' | 'infer';

export interface BackendInfo {
  /** tfjs backend name actually active: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu'. */
  name: string;
  /** Why this backend was chosen (and why better ones were not). */
  reason: string;
  /** wasm only: whether the SIMD build runs; null for other backends. */
  simd: boolean | null;
  threads: number;
  mixedPrecision: { enabled: false; reason: string };
  /** Informational lines (optional packages not installed, no GPU adapter...). */
  notes: string[];
  /** Lines the user should act on (e.g. the pure-JS cpu backend forced for training). */
  warnings: string[];
}

/** Loads an optional package by name without making it a (type) dependency. */
async function optionalImport(spec: string): Promise<Record<string, unknown> | null> {
  try {
    return (await import(/* @vite-ignore */ spec)) as Record<string, unknown>;
  } catch {
    return null;
  }
}

async function tryTensorflow(notes: string[]): Promise<string | null> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    if (await optionalImport(pkg)) {
      if (await tf.setBackend('tensorflow')) return pkg;
      notes.push(`${pkg} is installed but its 'tensorflow' backend failed to initialise`);
    }
  }
  notes.push('tfjs-node(-gpu) not installed (optional: npm install @tensorflow/tfjs-node-gpu for CUDA 11.2)');
  return null;
}

interface GpuNavigator {
  gpu?: { requestAdapter(): Promise<unknown> };
}

async function tryWebgpu(notes: string[]): Promise<string | null> {
  const dawn = await optionalImport('webgpu');
  if (!dawn || typeof dawn.create !== 'function') {
    notes.push(
      "WebGPU unavailable: optional packages 'webgpu' and '@tensorflow/tfjs-backend-webgpu' not installed",
    );
    return null;
  }
  Object.assign(globalThis, (dawn.globals as object | undefined) ?? {});
  const gpu = (dawn.create as (flags: string[]) => GpuNavigator['gpu'])([]);
  const adapter = await gpu?.requestAdapter().catch(() => null);
  if (!adapter) {
    notes.push('WebGPU: no GPU adapter found (Dawn reported none)');
    return null;
  }
  const g = globalThis as unknown as { navigator?: GpuNavigator };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  if (!(await optionalImport('@tensorflow/tfjs-backend-webgpu'))) {
    notes.push('WebGPU adapter found but @tensorflow/tfjs-backend-webgpu is not installed');
    return null;
  }
  return (await tf.setBackend('webgpu')) ? 'webgpu' : null;
}

async function useWasm(): Promise<{ simd: boolean; threads: number }> {
  registerWasmTrainingKernels();
  if (!(await tf.setBackend('wasm'))) throw new Error('the tfjs wasm backend failed to initialise');
  await tf.ready();
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  return { simd, threads: getThreadsCount() };
}

const MP_WASM = 'not supported: the wasm backend computes in float32 only';

/**
 * Activates the best backend for `purpose` given the user's preference and returns what was
 * chosen and why (recorded in every run's metadata).
 */
export async function selectBackend(pref: BackendPreference, purpose: BackendPurpose): Promise<BackendInfo> {
  const notes: string[] = [];
  const warnings: string[] = [];
  const mp = (reason: string) => ({ enabled: false as const, reason });
  if (pref === 'tensorflow' || pref === 'auto') {
    const pkg = await tryTensorflow(notes);
    if (pkg)
      return {
        name: 'tensorflow',
        reason: `${pkg} installed`,
        simd: null,
        threads: 0,
        mixedPrecision: mp('not implemented: tfjs-node runs float32 graphs'),
        notes,
        warnings,
      };
    if (pref === 'tensorflow')
      throw new UserError('INVALID_CONFIG', `training.backend 'tensorflow': ${notes.join('; ')}`);
  }
  if (pref === 'webgpu' || pref === 'auto') {
    if (await tryWebgpu(notes))
      return {
        name: 'webgpu',
        reason: 'GPU adapter found via Dawn (webgpu package)',
        simd: null,
        threads: 0,
        mixedPrecision: mp('not implemented: float16 training is not supported by tfjs layers'),
        notes,
        warnings,
      };
    if (pref === 'webgpu')
      throw new UserError('INVALID_CONFIG', `training.backend 'webgpu': ${notes.join('; ')}`);
  }
  if (pref === 'cpu') {
    if (purpose === 'train')
      warnings.push(
        "backend 'cpu' forced for training: pure JavaScript, orders of magnitude slower than wasm",
      );
    await tf.setBackend('cpu');
    return {
      name: 'cpu',
      reason: 'forced by config',
      simd: null,
      threads: 1,
      mixedPrecision: mp('not supported by cpu'),
      notes,
      warnings,
    };
  }
  const { simd, threads } = await useWasm();
  if (threads <= 1) notes.push('wasm runs single-threaded in Node.js (tfjs disables wasm threads there)');
  return {
    name: 'wasm',
    reason:
      pref === 'wasm'
        ? 'forced by config'
        : 'no tfjs-node or WebGPU adapter available; wasm (XNNPACK) with our training kernels',
    simd,
    threads,
    mixedPrecision: mp(MP_WASM),
    notes,
    warnings,
  };
}

/** Plain-JSON view of BackendInfo for metadata files. */
export function backendInfoJson(
  b: BackendInfo,
): Record<string, string | number | boolean | null | string[] | object> {
  return { ...b };
}

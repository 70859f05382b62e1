/**
 * Which ONNX Runtime execution provider (EP) runs our sessions: `device: auto | cpu | webgpu | cuda`
 * (training config key `device`, CLI `--device`, env ANOMALY_SPOTTER_DEVICE).
 *
 *   cpu     ONNX Runtime's native CPU kernels (always there: they ship in onnxruntime-node).
 *   cuda    the CUDA EP: needs libonnxruntime_providers_{shared,cuda}.so next to onnxruntime-node's
 *           libonnxruntime.so.1 (scripts/install-cuda-provider.sh) and CUDA 13 + cuDNN 9 libraries on
 *           the loader path. Pinned to one device with the provider option `deviceId`.
 *   webgpu  the WebGPU EP built into onnxruntime-node's libonnxruntime.so.1 (Dawn, over Vulkan on
 *           Linux: needs libvulkan.so.1 and a GPU's Vulkan driver).
 *   auto    the first of cuda, webgpu that initialises (a tiny probe session is created and run once
 *           per process and provider), else cpu. Why each GPU provider was passed over is recorded.
 *
 * An explicit `cuda` or `webgpu` that does not initialise is an error (no silent CPU run).
 * onnxruntime-node is imported lazily; nothing here loads it until a probe runs.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { UserError } from '../util/errors';
import { encodeModel, floatTensor, valueInfo } from './proto';

export type DevicePreference = 'auto' | 'cpu' | 'webgpu' | 'cuda';
export type ExecutionProviderName = Exclude<DevicePreference, 'auto'>;
export const DEVICE_PREFERENCES: readonly DevicePreference[] = ['auto', 'cpu', 'webgpu', 'cuda'];

/** Host-wide default for `device: auto` (an explicit config or CLI value wins). */
export const DEVICE_ENV = 'ANOMALY_SPOTTER_DEVICE';
/**
 * The host GPU index a training worker child is pinned to (`npm run worker -- --gpus 0,1` sets it
 * with CUDA_VISIBLE_DEVICES=<index>): recorded in logs, heartbeats and metadata.
 */
export const GPU_INDEX_ENV = 'ANOMALY_SPOTTER_GPU';
/**
 * The CUDA device id inside this process (default 0: with CUDA_VISIBLE_DEVICES=<index> the one
 * visible device is 0). Set it only to pick one of several visible devices without CUDA_VISIBLE_DEVICES.
 */
export const CUDA_DEVICE_ID_ENV = 'ANOMALY_SPOTTER_CUDA_DEVICE_ID';

/** GPU providers in the order `auto` tries them. */
export const AUTO_ORDER: readonly ExecutionProviderName[] = ['cuda', 'webgpu'];

export interface ProviderAttempt {
  provider: ExecutionProviderName;
  ok: boolean;
  /** The provider's error when it did not initialise. */
  error?: string;
  ms: number;
}

/** The resolved provider: what every session of this engine runs on, and why. */
export interface ExecutionProviderChoice {
  provider: ExecutionProviderName;
  /** What was asked for (after the env default for `auto`). */
  requested: DevicePreference;
  /** Where `requested` came from. */
  source: 'config' | 'env';
  /** CUDA device id inside this process (cuda only). */
  deviceId?: number;
  /** The host GPU index this process is pinned to (worker --gpus), when set. */
  gpu?: string;
  /** Why `auto` ended on a provider other than the first GPU one (each failed provider and its error). */
  fallbackReason?: string;
  /** The probes run to decide (auto), or the one that confirmed an explicit GPU provider. */
  attempts: ProviderAttempt[];
}

export function isDevicePreference(v: unknown): v is DevicePreference {
  return typeof v === 'string' && (DEVICE_PREFERENCES as readonly string[]).includes(v);
}

/** The effective preference: the configured value, or the host's env default when it is `auto`. */
export function effectiveDevice(
  configured: DevicePreference | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { device: DevicePreference; source: 'config' | 'env' } {
  // undefined: a config object built before `device` existed (hand-made in code, old metadata).
  configured ??= 'auto';
  const fromEnv = env[DEVICE_ENV]?.trim();
  if (configured !== 'auto' || !fromEnv) return { device: configured, source: 'config' };
  if (!isDevicePreference(fromEnv))
    throw new UserError(
      'INVALID_CONFIG',
      `${DEVICE_ENV}=${fromEnv}: expected one of ${DEVICE_PREFERENCES.join(', ')}`,
    );
  return { device: fromEnv, source: 'env' };
}

export function cudaDeviceId(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[CUDA_DEVICE_ID_ENV];
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw))
    throw new UserError('INVALID_CONFIG', `${CUDA_DEVICE_ID_ENV}=${raw}: expected an integer`);
  return Number(raw);
}

/** ONNX Runtime's `executionProviders` for a choice: the GPU provider first, CPU for nodes it lacks. */
export function executionProviders(
  choice: Pick<ExecutionProviderChoice, 'provider' | 'deviceId'> | undefined,
): Ort.InferenceSession.SessionOptions['executionProviders'] {
  if (!choice || choice.provider === 'cpu') return ['cpu'];
  if (choice.provider === 'cuda') return [{ name: 'cuda', deviceId: choice.deviceId ?? 0 }, 'cpu'];
  return [{ name: 'webgpu', validationMode: 'basic' }, 'cpu'];
}

/** One line for logs and reports: "cuda (device 0, host GPU 1)", "cpu (auto: cuda: ...; webgpu: ...)". */
export function describeProvider(c: ExecutionProviderChoice): string {
  const where: string[] = [];
  if (c.provider === 'cuda') where.push(`device ${c.deviceId ?? 0}`);
  if (c.gpu !== undefined) where.push(`host GPU ${c.gpu}`);
  if (c.requested !== c.provider)
    where.push(`${c.requested}${c.source === 'env' ? ` via ${DEVICE_ENV}` : ''}`);
  if (c.fallbackReason) where.push(c.fallbackReason);
  return where.length ? `${c.provider} (${where.join('; ')})` : c.provider;
}

/** The plain-JSON form recorded in run metadata. */
export function providerInfoJson(
  c: ExecutionProviderChoice,
): Record<string, string | number | boolean | null> {
  return {
    executionProvider: c.provider,
    deviceRequested: c.requested,
    deviceSource: c.source,
    cudaDeviceId: c.deviceId ?? null,
    gpu: c.gpu ?? null,
    deviceFallback: c.fallbackReason ?? null,
  };
}

/** A 1x4x4x1 -> 1x4x4x1 Conv + Relu graph: small, but exercises a real kernel of the provider. */
function probeModel(): Uint8Array {
  return encodeModel({
    name: 'ep-probe',
    nodes: [
      { op_type: 'Conv', name: 'conv', input: ['x', 'w'], output: ['c'], attribute: [] },
      { op_type: 'Relu', name: 'relu', input: ['c'], output: ['y'] },
    ],
    initializers: [floatTensor('w', [1, 1, 1, 1], Float32Array.from([2]))],
    inputs: [valueInfo('x', [1, 1, 4, 4])],
    outputs: [valueInfo('y', [1, 1, 4, 4])],
  });
}

type Probe = (ort: typeof Ort, provider: ExecutionProviderName, deviceId: number) => Promise<void>;

/** Creates and runs the probe session on `provider` alone (no CPU fallback), checking the result. */
export const defaultProbe: Probe = async (ort, provider, deviceId) => {
  if (provider === 'cuda') {
    // Without the provider libraries ONNX Runtime can only fail, and says so in red on stderr in
    // every process that probes: tell it here instead.
    const missing = missingCudaProviderLibraries();
    if (missing.length > 0)
      throw new Error(`CUDA provider not installed: ${missing.join(' and ')} not found in ${ortBinaryDir()}`);
  }
  if (provider === 'webgpu' && !hasGpuDeviceNode())
    // Dawn would only find a CPU Vulkan (which it rejects) and print its warnings on stderr.
    throw new Error('no WebGPU adapter: no GPU device node (/dev/dri/renderD*, /dev/nvidia*) on this host');
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(probeModel(), {
      executionProviders: [executionProviders({ provider, deviceId })?.[0] ?? provider],
      graphOptimizationLevel: 'disabled',
      intraOpNumThreads: 1,
      // The failure is reported through the returned error; keep ONNX Runtime's own log quiet.
      logSeverityLevel: 4,
    });
  } catch (err) {
    if (provider !== 'cuda') throw err;
    const msg = err instanceof Error ? err.message : String(err);
    const missing = missingCudaProviderLibraries();
    if (missing.length > 0)
      throw new Error(`${msg}: ${missing.join(' and ')} not found in ${ortBinaryDir()}`);
    // The provider libraries are there: what fails is usually a CUDA library they link or open.
    throw new Error(
      `${msg} (the CUDA provider libraries are installed; CUDA 13 / cuDNN 9 libraries missing from LD_LIBRARY_PATH, or no usable GPU? scripts/install-cuda-provider.sh --check says which)`,
    );
  }
  try {
    const x = Float32Array.from({ length: 16 }, (_, i) => i - 8);
    const out = await session.run({ x: new ort.Tensor('float32', x, [1, 1, 4, 4]) });
    const y = out.y.data as Float32Array;
    const bad = [...x].findIndex((v, i) => Math.abs(y[i] - Math.max(0, 2 * v)) > 1e-4);
    if (bad >= 0) throw new Error(`probe computed ${y[bad]} for relu(2 x ${x[bad]})`);
  } finally {
    await session.release();
  }
};

/** A GPU the kernel exposes: a DRM render node or an NVIDIA device. */
function hasGpuDeviceNode(): boolean {
  try {
    if (readdirSync('/dev/dri').some((f) => f.startsWith('renderD'))) return true;
  } catch {
    // no /dev/dri
  }
  return existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl');
}

/** onnxruntime-node's native folder (libonnxruntime.so.1; the CUDA provider libraries go beside it). */
export function ortBinaryDir(): string {
  const pkg = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

export const CUDA_PROVIDER_LIBRARIES = [
  'libonnxruntime_providers_shared.so',
  'libonnxruntime_providers_cuda.so',
] as const;

/** The CUDA provider libraries that are not next to libonnxruntime.so.1. */
export function missingCudaProviderLibraries(dir = safeBinaryDir()): string[] {
  if (dir === null) return [];
  return CUDA_PROVIDER_LIBRARIES.filter((f) => !existsSync(join(dir, f)));
}

function safeBinaryDir(): string | null {
  try {
    return ortBinaryDir();
  } catch {
    return null;
  }
}

const probeCache = new Map<string, Promise<ProviderAttempt>>();

/** Probes `provider` once per process (and device id); later calls share the first result. */
export function probeProvider(
  ort: typeof Ort,
  provider: ExecutionProviderName,
  deviceId = 0,
  probe: Probe = defaultProbe,
): Promise<ProviderAttempt> {
  const key = `${provider}:${deviceId}`;
  let p = probeCache.get(key);
  if (!p) {
    const t0 = performance.now();
    p = (provider === 'cpu' ? Promise.resolve() : probe(ort, provider, deviceId)).then(
      () => ({ provider, ok: true, ms: Math.round(performance.now() - t0) }),
      (err: unknown) => ({
        provider,
        ok: false,
        error: oneLine(err instanceof Error ? err.message : String(err)),
        ms: Math.round(performance.now() - t0),
      }),
    );
    probeCache.set(key, p);
  }
  return p;
}

/** Forgets cached probe results (tests). */
export function resetProviderProbes(): void {
  probeCache.clear();
}

function oneLine(s: string): string {
  const line = s.replace(/\s+/g, ' ').trim();
  return line.length > 400 ? `${line.slice(0, 400)}...` : line;
}

const INSTALL_HINT: Record<ExecutionProviderName, string> = {
  cpu: '',
  cuda: 'install the CUDA provider with scripts/install-cuda-provider.sh (docs/BENCHMARKS.md) and put the CUDA 13 libraries on LD_LIBRARY_PATH',
  webgpu: 'WebGPU needs libvulkan.so.1 and a GPU Vulkan driver (Dawn finds no adapter otherwise)',
};

/**
 * Resolves `configured` (after the env default) to the provider every session will use.
 * Explicit `cuda`/`webgpu` are probed too and throw a UserError naming the provider's error.
 */
export async function resolveExecutionProvider(
  configured: DevicePreference | undefined,
  opts: { env?: NodeJS.ProcessEnv; probe?: Probe; ort?: typeof Ort } = {},
): Promise<ExecutionProviderChoice> {
  const env = opts.env ?? process.env;
  const { device, source } = effectiveDevice(configured, env);
  const gpu = env[GPU_INDEX_ENV] || undefined;
  const base = { requested: device, source, ...(gpu !== undefined ? { gpu } : {}) } as const;
  if (device === 'cpu') return { ...base, provider: 'cpu', attempts: [] };
  const ort = opts.ort ?? (await import('onnxruntime-node'));
  const deviceId = cudaDeviceId(env);
  const candidates = device === 'auto' ? AUTO_ORDER : [device];
  const attempts: ProviderAttempt[] = [];
  for (const provider of candidates) {
    const a = await probeProvider(ort, provider, provider === 'cuda' ? deviceId : 0, opts.probe);
    attempts.push(a);
    if (a.ok) {
      const passed = attempts.filter((x) => !x.ok);
      return {
        ...base,
        provider,
        ...(provider === 'cuda' ? { deviceId } : {}),
        ...(passed.length ? { fallbackReason: fallbackText(passed) } : {}),
        attempts,
      };
    }
  }
  if (device !== 'auto') {
    const a = attempts[0];
    throw new UserError(
      'INVALID_CONFIG',
      `device: ${device}${source === 'env' ? ` (${DEVICE_ENV})` : ''}, but ONNX Runtime's ${device} execution provider did not initialise: ${a.error}. ${INSTALL_HINT[device]}; or set device: auto or cpu`,
    );
  }
  return { ...base, provider: 'cpu', fallbackReason: fallbackText(attempts), attempts };
}

function fallbackText(failed: ProviderAttempt[]): string {
  return `auto: ${failed.map((a) => `${a.provider} unavailable (${a.error})`).join('; ')}`;
}

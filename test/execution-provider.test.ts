/**
 * Execution provider selection (lib/onnx/execution-provider): `device: auto` probes cuda, then
 * webgpu, once per process, and falls back to CPU with the providers' own errors as the recorded
 * reason; explicit GPU devices fail loudly; the worker pins one GPU per training child. The real
 * probes run here: on a machine without a GPU (CI, these hosts) both GPU providers fail.
 */
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyMapSchema, trainingConfigSchema } from '../lib/config/schema';
import { inferenceEngineLabel, latencyStats } from '../lib/eval/scores-file';
import { createScoringEngine } from '../lib/eval/scoring-engine';
import { buildUNetLite } from '../lib/models/autoencoder/unet';
import {
  CUDA_DEVICE_ID_ENV,
  DEVICE_ENV,
  type ExecutionProviderName,
  effectiveDevice,
  executionProviders,
  GPU_INDEX_ENV,
  missingCudaProviderLibraries,
  probeProvider,
  resetProviderProbes,
  resolveExecutionProvider,
} from '../lib/onnx/execution-provider';
import { ortSessionOptions } from '../lib/onnx/session';
import { trainingFacts } from '../lib/report/targets';
import { buildServer } from '../lib/serve/app';
import { trainWorkerSlots } from '../temporal/train-slots';

afterEach(() => resetProviderProbes());

/** A probe that succeeds for the listed providers and fails with a recognisable error otherwise. */
function fakeProbe(working: ExecutionProviderName[], calls: string[] = []) {
  return async (_o: typeof ort, provider: ExecutionProviderName, deviceId: number) => {
    calls.push(`${provider}:${deviceId}`);
    if (!working.includes(provider)) throw new Error(`no ${provider} here`);
  };
}

describe('device: auto on this machine (real probes)', () => {
  it('falls back to CPU and records each GPU provider error', async () => {
    const choice = await resolveExecutionProvider('auto', { env: {} });
    const gpuHere = choice.attempts.some((a) => a.ok);
    if (gpuHere) {
      // A machine with a working GPU provider (a GPU host running the suite): it is chosen.
      expect(choice.provider).not.toBe('cpu');
      return;
    }
    expect(choice.provider).toBe('cpu');
    expect(choice.requested).toBe('auto');
    expect(choice.attempts.map((a) => a.provider)).toEqual(['cuda', 'webgpu']);
    for (const a of choice.attempts) {
      expect(a.error).toBeTruthy();
      expect(choice.fallbackReason).toContain(`${a.provider} unavailable (${a.error})`);
    }
    if (!existsSync('/dev/nvidia0') && missingCudaProviderLibraries().length > 0) {
      // The npm package ships no CUDA provider: the reason says which libraries are missing and where.
      expect(choice.attempts[0].error).toMatch(
        /libonnxruntime_providers_shared\.so.*not found in .*onnxruntime-node/,
      );
      // Dawn finds no Vulkan adapter (no libvulkan, or only Mesa's CPU lavapipe, which Dawn rejects).
      expect(choice.attempts[1].error).toMatch(/WebGPU adapter|Vulkan|webgpu/i);
    }
  });

  it('explicit cuda that does not initialise is an error naming the provider error and the install script', async () => {
    const probe = await probeProvider(ort, 'cuda', 0);
    if (probe.ok) return; // a CUDA host
    await expect(resolveExecutionProvider('cuda', { env: {} })).rejects.toThrow(
      /device: cuda, but ONNX Runtime's cuda execution provider did not initialise: .*install-cuda-provider\.sh/,
    );
  });
});

describe('provider selection (fake probes)', () => {
  it('auto prefers cuda, then webgpu, and probes each provider once per process', async () => {
    const calls: string[] = [];
    const probe = fakeProbe(['webgpu'], calls);
    const a = await resolveExecutionProvider('auto', { env: {}, probe, ort });
    expect(a.provider).toBe('webgpu');
    expect(a.fallbackReason).toBe('auto: cuda unavailable (no cuda here)');
    const b = await resolveExecutionProvider('auto', { env: {}, probe, ort });
    expect(b.provider).toBe('webgpu');
    expect(calls).toEqual(['cuda:0', 'webgpu:0']);

    resetProviderProbes();
    const c = await resolveExecutionProvider('auto', { env: {}, probe: fakeProbe(['cuda', 'webgpu']), ort });
    expect(c).toMatchObject({ provider: 'cuda', deviceId: 0 });
    expect(c.fallbackReason).toBeUndefined();
  });

  it('cpu never probes; explicit GPU providers are probed and throw when they fail', async () => {
    const calls: string[] = [];
    const cpu = await resolveExecutionProvider('cpu', { env: {}, probe: fakeProbe([], calls), ort });
    expect(cpu).toMatchObject({ provider: 'cpu', attempts: [] });
    expect(calls).toEqual([]);
    await expect(
      resolveExecutionProvider('webgpu', { env: {}, probe: fakeProbe(['cuda']), ort }),
    ).rejects.toThrow(/device: webgpu, but .*: no webgpu here\. WebGPU needs libvulkan/);
  });

  it('ANOMALY_SPOTTER_DEVICE is the host default for auto; the CUDA device id and host GPU are recorded', async () => {
    expect(effectiveDevice('auto', { [DEVICE_ENV]: 'cpu' })).toEqual({ device: 'cpu', source: 'env' });
    expect(effectiveDevice('cuda', { [DEVICE_ENV]: 'cpu' })).toEqual({ device: 'cuda', source: 'config' });
    // Configs built before the key existed count as auto.
    expect(effectiveDevice(undefined, {})).toEqual({ device: 'auto', source: 'config' });
    expect(() => effectiveDevice('auto', { [DEVICE_ENV]: 'tpu' })).toThrow(/ANOMALY_SPOTTER_DEVICE=tpu/);
    const env = { [DEVICE_ENV]: 'cuda', [GPU_INDEX_ENV]: '1', [CUDA_DEVICE_ID_ENV]: '0' };
    const c = await resolveExecutionProvider('auto', { env, probe: fakeProbe(['cuda']), ort });
    expect(c).toMatchObject({ provider: 'cuda', requested: 'cuda', source: 'env', deviceId: 0, gpu: '1' });
  });

  it('maps a choice to ONNX Runtime executionProviders (CPU behind a GPU provider)', () => {
    expect(executionProviders(undefined)).toEqual(['cpu']);
    expect(executionProviders({ provider: 'cuda', deviceId: 2 })).toEqual([
      { name: 'cuda', deviceId: 2 },
      'cpu',
    ]);
    expect(executionProviders({ provider: 'webgpu' })?.[0]).toMatchObject({ name: 'webgpu' });
    // ortSessionOptions stays backward compatible: no provider given, CPU.
    expect(ortSessionOptions({ threads: 2 }).executionProviders).toEqual(['cpu']);
    expect(
      ortSessionOptions({ threads: 2, executionProvider: { provider: 'cuda', deviceId: 0 } }),
    ).toMatchObject({
      executionProviders: [{ name: 'cuda', deviceId: 0 }, 'cpu'],
      intraOpNumThreads: 2,
    });
  });

  it('training.device defaults to auto and accepts only the known providers', () => {
    expect(trainingConfigSchema.parse({}).device).toBe('auto');
    expect(trainingConfigSchema.parse({ device: 'cuda' }).device).toBe('cuda');
    expect(trainingConfigSchema.safeParse({ device: 'gpu' }).success).toBe(false);
  });
});

describe('one GPU per training worker', () => {
  it('pins each child to its GPU, --train-slots per GPU, cores shared', () => {
    const slots = trainWorkerSlots({ gpus: [0, 1], trainSlots: 2, cores: 16 });
    expect(slots.map((s) => s.label)).toEqual(['gpu0.0', 'gpu0.1', 'gpu1.0', 'gpu1.1']);
    expect(slots[2].env).toEqual({
      CUDA_VISIBLE_DEVICES: '1',
      ANOMALY_SPOTTER_GPU: '1',
      ANOMALY_SPOTTER_TRAIN_THREADS: '4',
    });
    expect(trainWorkerSlots({ gpus: [3], trainSlots: 1, cores: 8 })).toEqual([
      {
        label: 'gpu3',
        env: { CUDA_VISIBLE_DEVICES: '3', ANOMALY_SPOTTER_GPU: '3', ANOMALY_SPOTTER_TRAIN_THREADS: '8' },
      },
    ]);
    expect(trainWorkerSlots({ gpus: [0], trainSlots: 0, cores: 8 })).toEqual([]);
    expect(trainWorkerSlots({ trainSlots: 3, cores: 2 }).map((s) => s.env)).toEqual([
      { ANOMALY_SPOTTER_TRAIN_THREADS: '1' },
      { ANOMALY_SPOTTER_TRAIN_THREADS: '1' },
      { ANOMALY_SPOTTER_TRAIN_THREADS: '1' },
    ]);
  });
});

describe('reports show what ran', () => {
  it('training: the engine and execution provider, not the idle tfjs backend', () => {
    expect(
      trainingFacts({ backend: 'wasm', engine: 'onnx', executionProvider: 'cpu', threads: 2 }).backend,
    ).toBe('onnx (ONNX Runtime CPU, 2 threads)');
    const cuda = trainingFacts({
      backend: 'wasm',
      engine: 'onnx',
      executionProvider: 'cuda',
      threads: 4,
      gpu: '1',
      peakRssMiB: 700,
    });
    expect(cuda).toEqual({
      model: null,
      backend: 'onnx (ONNX Runtime CUDA, host GPU 1, 4 CPU threads)',
      peakRssMb: 700,
    });
    const fellBack = trainingFacts({
      backend: 'wasm',
      engine: 'onnx',
      deviceFallback: 'auto: cuda unavailable (x)',
    });
    expect(fellBack).toMatchObject({
      backend: 'onnx (ONNX Runtime CPU)',
      deviceFallback: 'auto: cuda unavailable (x)',
    });
    expect(trainingFacts({ backend: 'wasm', engine: 'tfjs' }).backend).toBe('tfjs wasm');
    // Summaries from before the engine was recorded keep their tfjs backend.
    expect(trainingFacts({ backend: 'wasm' }).backend).toBe('wasm');
  });

  it('inference: the execution provider with the engine', () => {
    const cpu = latencyStats([1, 2], 'wasm', 8, {
      engine: 'onnx',
      engineThreads: 2,
      executionProvider: 'cpu',
    });
    expect(inferenceEngineLabel(cpu)).toBe('onnx (ONNX Runtime CPU, 2 threads)');
    const cuda = latencyStats([1], 'wasm', 8, {
      engine: 'onnx',
      engineThreads: 2,
      executionProvider: 'cuda',
      cudaDeviceId: 0,
      gpu: '1',
    });
    expect(inferenceEngineLabel(cuda)).toBe('onnx (ONNX Runtime CUDA device 0, host GPU 1, 2 CPU threads)');
  });
});

describe('scoring on the configured device', () => {
  it('records the execution provider (and why auto fell back); an explicit GPU device never falls back to tfjs', async () => {
    const model = buildUNetLite({ imageSize: 16, widths: [4], seed: 1 });
    const targets = [{ model, anomalyMap: anomalyMapSchema.parse({}) }];
    try {
      const e = await createScoringEngine('auto', targets, { device: 'auto', threads: 1 });
      expect(e.engine).toBe('onnx');
      const ep = e.executionProvider;
      expect(ep).toBeDefined();
      if (ep?.provider === 'cpu' && ep.requested === 'auto')
        expect(ep.fallbackReason).toMatch(/^auto: cuda unavailable/);
      const scored = await e.score(
        model,
        new Float32Array(16 * 16 * 3).fill(0.5),
        1,
        16,
        targets[0].anomalyMap,
        1,
      );
      expect(scored.scores).toHaveLength(1);
      await e.release();
      const cpu = await createScoringEngine('onnx', targets, { device: 'cpu', threads: 1 });
      expect(cpu.executionProvider).toMatchObject({ provider: 'cpu', requested: 'cpu', attempts: [] });
      await cpu.release();
      if (!(await probeProvider(ort, 'cuda', 0)).ok)
        await expect(createScoringEngine('auto', targets, { device: 'cuda' })).rejects.toThrow(
          /device: cuda, but/,
        );
    } finally {
      model.dispose();
    }
  });

  it('/healthz names the engine and execution provider when the server knows them', async () => {
    const { app } = await buildServer({
      models: [],
      logger: false,
      engineInfo: {
        name: 'onnx',
        executionProvider: 'cpu',
        threads: 2,
        deviceFallback: 'auto: cuda unavailable (x)',
      },
    });
    try {
      expect((await app.inject('/healthz')).json()).toEqual({
        status: 'ok',
        engine: {
          name: 'onnx',
          executionProvider: 'cpu',
          threads: 2,
          deviceFallback: 'auto: cuda unavailable (x)',
        },
      });
    } finally {
      await app.close();
    }
  });
});

/**
 * Loads model packages and starts listening: what `npm run serve`, the latency benchmark and the
 * browser test share. The tfjs inference backend must be selected before calling.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { type DevicePreference, providerInfoJson } from '../onnx/execution-provider';
import { buildServer, type EngineInfo, type ServeOptions } from './app';
import { createEngineScorer, type InferenceEngine } from './engine';
import { loadServedModels, type ServedModel, type SkippedPackage } from './models';
import { resolveModelsSource } from './remote-models';

export interface StartOptions extends Omit<ServeOptions, 'models'> {
  /** A package folder or a runs folder (see loadServedModels), or an s3:// URL of either (see remote-models). */
  models: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
  logger?: FastifyBaseLogger | boolean;
  /** Forward pass engine (default 'tfjs'); 'onnx' runs it on ONNX Runtime (ignored when `scorer` is set). */
  engine?: InferenceEngine;
  /** ONNX Runtime intra-op threads (default: all cores). */
  engineThreads?: number;
  /** ONNX Runtime execution provider: auto (default) | cpu | cuda | webgpu (lib/onnx/execution-provider). */
  device?: DevicePreference;
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  models: ServedModel[];
  skipped: SkippedPackage[];
  /** The inference engine in use ('auto' resolved) and why 'auto' fell back to tfjs, if it did. */
  engine: { name: 'tfjs' | 'onnx'; fallbackReason?: string } & Partial<EngineInfo>;
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const { models, skipped } = await loadServedModels(await resolveModelsSource(opts.models));
  const engine = opts.scorer
    ? { engine: 'tfjs' as const, fallbackReason: undefined, release: async () => {} }
    : await createEngineScorer(opts.engine ?? 'tfjs', models, {
        threads: opts.engineThreads,
        device: opts.device,
      });
  const ep = 'executionProvider' in engine ? engine.executionProvider : undefined;
  const engineInfo: EngineInfo = {
    name: engine.engine,
    ...(ep ? providerInfoJson(ep) : {}),
    ...('threads' in engine && engine.threads !== undefined ? { threads: engine.threads } : {}),
    ...(engine.fallbackReason ? { engineFallback: engine.fallbackReason } : {}),
  };
  const { app } = await buildServer({ ...opts, models, scorer: opts.scorer ?? engine.scorer, engineInfo });
  // The models were loaded here, so they are released here (after in-flight requests have drained).
  app.addHook('onClose', async () => {
    await engine.release();
    for (const m of models) m.pkg.model.dispose();
  });
  const address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
  return {
    app,
    url: address,
    models,
    skipped,
    engine: { ...engineInfo, name: engine.engine, fallbackReason: engine.fallbackReason },
  };
}

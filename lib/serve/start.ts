/**
 * Loads model packages and starts listening: what `npm run serve`, the latency benchmark and the
 * browser test share. The tfjs inference backend must be selected before calling.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { type DevicePreference, providerInfoJson } from '../onnx/execution-provider';
import { loadModelPackage, PACKAGE_FILES } from '../package/package';
import { isRemoteStoreUrl } from '../store/open';
import { buildServer, type EngineInfo, type ServeOptions } from './app';
import { createEngineScorer, type InferenceEngine } from './engine';
import {
  championPackageDirs,
  loadServedModels,
  type ServedModel,
  type SkippedPackage,
  servedModel,
} from './models';
import type { ModelPredictor, Scorer } from './predictor';
import { mirrorRemoteModels, resolveModelsSource } from './remote-models';

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
  /**
   * Serving a runs folder: how often to look for a new champion (lib/package/champion) and switch to
   * it without a restart, in ms (default 10000; 0: never). From a bucket, the pointers there are
   * read again every REMOTE_REFRESH_POLLS polls.
   */
  championPollMs?: number;
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
  const source = await resolveModelsSource(opts.models);
  const { models, skipped } = await loadServedModels(source);
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
  const { app, replaceModel } = await buildServer({
    ...opts,
    models,
    scorer: opts.scorer ?? engine.scorer,
    engineInfo,
  });
  // The models were loaded here, so they are released here (after in-flight requests have drained).
  app.addHook('onClose', async () => {
    await engine.release();
    for (const m of models) m.pkg.model.dispose();
  });
  const pollMs = opts.championPollMs ?? 10_000;
  const isRunsFolder = !(await stat(join(source, PACKAGE_FILES.manifest)).catch(() => null));
  if (pollMs > 0 && isRunsFolder) {
    // Serving a bucket: the local mirror is brought up to date (pointers, new packages) now and then,
    // and the same polling follows the pointers in it.
    const refresh = isRemoteStoreUrl(opts.models)
      ? async () => void (await mirrorRemoteModels(opts.models))
      : undefined;
    const followers = followChampions(
      source,
      models,
      replaceModel,
      opts,
      (line) => app.log.info(line),
      pollMs,
      refresh,
    );
    app.addHook('onClose', followers.stop);
  }
  const address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
  return {
    app,
    url: address,
    models,
    skipped,
    engine: { ...engineInfo, name: engine.engine, fallbackReason: engine.fallbackReason },
  };
}

/** Serving from a bucket: its champion pointers are read again every this many polls (60 s by default). */
export const REMOTE_REFRESH_POLLS = 6;

/**
 * Switches a category to its new champion when the promote step (or `pipeline promote|rollback`)
 * moves the pointer: the new package is loaded and given its own scoring engine, then replaces the old
 * one; requests already queued finish on the old model. A champion that does not load is logged and
 * the old model keeps serving. Old models are released when the server closes.
 */
function followChampions(
  root: string,
  served: ServedModel[],
  replaceModel: (next: ServedModel, scorer?: Scorer) => ModelPredictor | undefined,
  opts: StartOptions,
  log: (line: string) => void,
  pollMs: number,
  refresh?: () => Promise<void>,
): { stop: () => Promise<void> } {
  const engines: { release(): Promise<void> }[] = [];
  const replaced: ServedModel[] = [];
  const failed = new Set<string>();
  let busy = false;
  let polls = 0;
  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      // A remote source is listed again every REMOTE_REFRESH_POLLS polls (a bucket listing is dearer
      // than reading a local folder); a failed refresh keeps the mirror as it was.
      if (refresh && polls++ % REMOTE_REFRESH_POLLS === REMOTE_REFRESH_POLLS - 1)
        await refresh().catch((err: unknown) =>
          log(`could not refresh the models from the store: ${(err as Error).message}`),
        );
      for (const [category, dir] of await championPackageDirs(root)) {
        const cur = served.find((m) => m.category === category);
        if (!cur || cur.pkg.dir === dir || failed.has(dir)) continue;
        try {
          const next = servedModel(await loadModelPackage(dir, { requireCalibration: true }));
          const engine = opts.scorer
            ? undefined
            : await createEngineScorer(opts.engine ?? 'tfjs', [next], {
                threads: opts.engineThreads,
                device: opts.device,
              });
          if (engine) engines.push(engine);
          const old = replaceModel(next, opts.scorer ?? engine?.scorer);
          if (old) replaced.push(old.served);
          log(`${category}: now serving the champion ${dir} (run ${next.pkg.metadata.runId})`);
        } catch (err) {
          failed.add(dir);
          log(
            `${category}: the new champion ${dir} does not load (${(err as Error).message}); still serving ${cur.pkg.dir}`,
          );
        }
      }
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void poll(), pollMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(engines.map((e) => e.release()));
      for (const m of replaced) m.pkg.model.dispose();
    },
  };
}

import { dirname, join } from 'node:path';
import { modelKind } from '../config/schema';
import { type CachedSplit, readCachedSplit } from '../data/tensor-cache';
import { loadScorableModel, type ScorableModel, scorableImageSize } from '../infer/scorable-model';
import type { StepContext, StepFunction, StepHooks } from '../steps/contracts';
import { artifact, finishStep, inputPath } from '../steps/result';
import { writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';
import { toUnitFloat } from './anomaly-map';
import { writeMaps } from './map-store';
import { useInferenceBackend } from './runtime';
import { latencyProviderFields, latencyStats, type ScoreRecord, type ScoresFile } from './scores-file';
import { createScoringEngine, INFERENCE_ENGINES, type InferenceEngine } from './scoring-engine';

/**
 * validate: scores the validation and test splits with the best trained model.
 * Writes scores.json (per image), the anomaly maps of both splits (val maps feed the pixel
 * threshold, test maps the pixel metrics) and inference latency. Metrics come later (report), from
 * these files, so that thresholds can be refitted without rerunning inference.
 * Scoring runs on ONNX Runtime when it loads, else on tfjs (params.engine: auto | onnx | tfjs, as
 * `npm run serve --engine`); the engine is recorded with the latency, which depends on it.
 */
export const validateStep: StepFunction = async (ctx, hooks) => {
  const startedAt = new Date();
  const preprocessDir = dirname(inputPath(ctx, 'preprocess', 'manifest'));
  const modelDir = dirname(inputPath(ctx, 'train', 'best_model'));
  const batchSize = inferenceBatchSize(ctx);
  // PatchCore runs wholly on ONNX Runtime: no tfjs backend is involved, so none is recorded. The
  // autoencoder's backend is selected before its tfjs model is loaded.
  const backend =
    modelKind(ctx.config) !== 'autoencoder' ? 'onnxruntime' : await useInferenceBackend(ctx.config.backend);
  const model = await loadScorableModel(modelDir);
  try {
    const files = await scoreSplits(ctx, hooks, model, preprocessDir, backend, batchSize);
    return finishStep(
      ctx,
      'validate',
      startedAt,
      [
        await artifact(ctx, 'scores', files.scores),
        await artifact(ctx, 'test_maps', files.testMaps),
        await artifact(ctx, 'val_maps', files.valMaps),
      ],
      {
        valImages: files.summary.val.length,
        testImages: files.summary.test.length,
        backend,
        engine: files.summary.latency.engine ?? 'tfjs',
        meanMsPerImage: round(files.summary.latency.meanMsPerImage),
        p95MsPerImage: round(files.summary.latency.p95MsPerImage),
      },
    );
  } finally {
    model.dispose();
  }
};

const round = (v: number) => Math.round(v * 1000) / 1000;

function inferenceBatchSize(ctx: StepContext): number {
  const v = ctx.params.batch_size ?? 8;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new UserError(
      'INVALID_PIPELINE',
      `step '${ctx.step}': params.batch_size must be a positive integer, got ${JSON.stringify(v)}`,
    );
  return v;
}

function inferenceEngine(ctx: StepContext): InferenceEngine {
  const v = ctx.params.engine ?? 'auto';
  if (typeof v !== 'string' || !(INFERENCE_ENGINES as readonly string[]).includes(v))
    throw new UserError(
      'INVALID_PIPELINE',
      `step '${ctx.step}': params.engine must be one of ${INFERENCE_ENGINES.join(', ')}, got ${JSON.stringify(v)}`,
    );
  return v as InferenceEngine;
}

/** The step's work on an already-loaded model; also used by `npm run evaluate`. */
export async function scoreSplits(
  ctx: StepContext,
  hooks: StepHooks,
  model: ScorableModel,
  preprocessDir: string,
  backend: string,
  batchSize: number,
): Promise<{ scores: string; testMaps: string; valMaps: string; summary: ScoresFile }> {
  const cfg = ctx.config.anomaly_map;
  const latency: number[] = [];
  const records: Record<'val' | 'test', ScoreRecord[]> = { val: [], test: [] };
  const mapPaths: Record<'val' | 'test', string> = { val: '', test: '' };
  let size = 0;
  const engine = await createScoringEngine(inferenceEngine(ctx), [{ model, anomalyMap: cfg }], {
    device: ctx.config.device,
  });
  try {
    for (const split of ['val', 'test'] as const) {
      if (hooks.signal.aborted) throw new Error('validate cancelled');
      hooks.progress({ stage: `scoring ${split} split` });
      const data: CachedSplit = await readCachedSplit(preprocessDir, split);
      size = data.size;
      const modelSize = scorableImageSize(model);
      if (modelSize !== data.size) {
        throw new UserError(
          'INVALID_MODEL',
          `model input is ${modelSize} px but the tensor cache in ${preprocessDir} holds ${data.size} px images`,
        );
      }
      const scored = await engine.score(
        model,
        toUnitFloat(data.images),
        data.count,
        data.size,
        cfg,
        batchSize,
        {
          signal: hooks.signal,
          onBatch: (done, total) =>
            hooks.progress({
              stage: `scoring ${split} split`,
              batch: done,
              totalBatches: total,
              message: `${split}: ${done}/${total} images`,
            }),
        },
      );
      latency.push(...scored.latencyMs);
      records[split] = data.records.map((r, i) => ({
        id: r.id,
        source: r.source,
        split,
        defectType: r.defectType,
        label: r.label,
        score: scored.scores[i],
      }));
      mapPaths[split] = await writeMaps(
        ctx.stepDir,
        `${split}_maps`,
        scored.maps,
        data.size,
        data.records.map((r) => r.id),
      );
    }
  } finally {
    await engine.release();
  }
  const summary: ScoresFile = {
    version: 1,
    category: ctx.category,
    imageSize: size,
    anomalyMap: cfg,
    val: records.val,
    test: records.test,
    latency: latencyStats(latency, backend, batchSize, {
      engine: engine.engine,
      engineThreads: engine.threads,
      engineFallback: engine.fallbackReason,
      ...latencyProviderFields(engine.executionProvider),
    }),
  };
  const scores = join(ctx.stepDir, 'scores.json');
  await writeJsonAtomic(scores, summary);
  return { scores, testMaps: mapPaths.test, valMaps: mapPaths.val, summary };
}

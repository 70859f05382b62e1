/** POST /v1/predict, POST /v1/predict/batch and GET /v1/models. */
import type { FastifyInstance, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { ApiError } from '../api-error';
import { heatmapPng, maskPng } from '../heatmap';
import { type DecodedImage, decodeImage, ImageInputError } from '../image-input';
import type { ServedModel } from '../models';
import type { ModelPredictor, Prediction } from '../predictor';
import { readImageRequest } from '../request-images';
import {
  batchBody,
  batchResponse,
  imageRouteErrors,
  json,
  modelsResponse,
  predictBody,
  predictQuery,
  predictResponse,
} from '../schemas';
import type { ServeContext } from './context';

export interface ImageResult {
  name: string;
  score: number;
  normalisedScore: number;
  threshold: number;
  verdict: Prediction['verdict'];
  defectArea: number;
  image: { format: DecodedImage['format']; width: number; height: number };
  /** PNG data URIs (size x size of the model); omitted with `?heatmap=false`. */
  heatmap?: string;
  mask?: string;
}

export interface ImageFailure {
  name: string;
  error: { code: string; message: string };
}

function modelInfo(m: ServedModel) {
  const { metadata, calibration, preprocess, metrics } = m.pkg;
  return {
    category: m.category,
    pipeline: metadata.pipeline,
    runId: metadata.runId,
    createdAt: metadata.createdAt,
    imageSize: preprocess.imageSize,
    architecture: metadata.architecture,
    calibration: {
      imageThreshold: calibration.imageThreshold,
      pixelThreshold: calibration.pixelThreshold,
      strategy: calibration.strategy,
    },
    metrics,
    reports: m.runDir ? `/reports/${metadata.pipeline}/${metadata.runId}/` : null,
  };
}

const pngUri = (buf: Buffer) => `data:image/png;base64,${buf.toString('base64')}`;

/**
 * The predict routes take multipart/form-data or JSON: request-images reads and validates either
 * (with the same zod schemas the document shows), so the body is not validated up front; the query is.
 */
const bodyCheckedByHandler: FastifySchemaCompiler<unknown> = (route) =>
  route.httpPart === 'body' ? (data) => ({ value: data }) : validatorCompiler(route as never);

export async function predictPlugin(app: FastifyInstance, ctx: ServeContext): Promise<void> {
  const { models, metrics, limits } = ctx;
  const known = () => [...models.keys()].sort().join(', ');

  const resolveModel = (category: string | undefined): ModelPredictor => {
    if (category === undefined || category === '') {
      // One model loaded: the category is unambiguous, so clients may omit it.
      if (models.size === 1) return [...models.values()][0];
      throw new ApiError(400, 'MISSING_FIELD', `missing field "category" (one of: ${known()})`);
    }
    const m = models.get(category);
    if (!m)
      throw new ApiError(
        404,
        'UNKNOWN_CATEGORY',
        `unknown category '${category}'; loaded models: ${known()}`,
      );
    return m;
  };

  const wantImages = (req: FastifyRequest) => {
    const q = req.query as Record<string, string | undefined>;
    return !(q.heatmap === 'false' || q.heatmap === '0');
  };

  /** Decodes every image (in parallel, outside the model queue), then scores the good ones in one batch. */
  const runPredict = async (req: FastifyRequest, batch: boolean) => {
    const started = performance.now();
    const { category, images } = await readImageRequest(req, batch, limits);
    const predictor = resolveModel(category);
    const model = predictor.served;
    const spec = model.pkg.preprocess;
    const decoded = await Promise.all(
      images.map((img) =>
        decodeImage(img.data, spec, { maxPixels: limits.maxPixels, name: img.name }).then(
          (d) => ({ name: img.name, d }),
          (err: unknown) => {
            if (!(err instanceof ImageInputError)) throw err;
            return { name: img.name, err };
          },
        ),
      ),
    );
    if (!batch && 'err' in decoded[0]) throw decoded[0].err;
    const ok = decoded.filter((x): x is { name: string; d: DecodedImage } => 'd' in x);
    const decodeMs = performance.now() - started;
    let inferenceMs = 0;
    const results: ImageResult[] = [];
    if (ok.length > 0) {
      const out = await predictor.predict(ok.map((x) => x.d.tensor));
      inferenceMs = out.inferenceMs;
      const size = spec.imageSize;
      const pixelThreshold = model.pkg.calibration.pixelThreshold;
      const withImages = wantImages(req);
      // Every image's PNGs are encoded at once (sharp's thread pool), not one image after the other.
      const encoded = await Promise.all(
        out.predictions.map((p) =>
          withImages
            ? Promise.all([heatmapPng(p.map, size, pixelThreshold), maskPng(p.map, size, pixelThreshold)])
            : null,
        ),
      );
      for (const [i, p] of out.predictions.entries()) {
        const { d, name } = ok[i];
        metrics.images.inc({ category: model.category, verdict: p.verdict });
        metrics.imageSeconds.observe({ category: model.category }, out.inferenceMs / 1000 / ok.length);
        const r: ImageResult = {
          name,
          score: p.score,
          normalisedScore: p.normalisedScore,
          threshold: p.threshold,
          verdict: p.verdict,
          defectArea: p.defectArea,
          image: { format: d.format, width: d.width, height: d.height },
        };
        const pngs = encoded[i];
        if (pngs) {
          r.heatmap = pngUri(pngs[0]);
          r.mask = pngUri(pngs[1]);
        }
        results.push(r);
      }
    }
    const failed: ImageFailure[] = decoded
      .filter((x): x is { name: string; err: ImageInputError } => 'err' in x)
      .map((x) => {
        metrics.errors.inc({ code: x.err.code });
        return { name: x.name, error: { code: x.err.code, message: x.err.message } };
      });
    const timings = { decodeMs, inferenceMs, totalMs: performance.now() - started };
    return { model: modelInfo(model), results, failed, timings };
  };

  const errors = imageRouteErrors(ctx.auth);
  app.post(
    '/v1/predict',
    {
      validatorCompiler: bodyCheckedByHandler,
      schema: {
        summary: 'Score one image',
        querystring: predictQuery,
        body: predictBody,
        response: { 200: json('Prediction', predictResponse), ...errors },
      },
    },
    async (req) => {
      const { model, results, timings } = await runPredict(req, false);
      return {
        category: model.category,
        model: { pipeline: model.pipeline, runId: model.runId },
        ...results[0],
        timings,
      };
    },
  );
  app.post(
    '/v1/predict/batch',
    {
      validatorCompiler: bodyCheckedByHandler,
      schema: {
        summary: 'Score several images with one model; undecodable images are listed in `failed`',
        querystring: predictQuery,
        body: batchBody,
        response: { 200: json('Predictions', batchResponse), ...errors },
      },
    },
    async (req) => {
      const { model, results, failed, timings } = await runPredict(req, true);
      return {
        category: model.category,
        model: { pipeline: model.pipeline, runId: model.runId },
        results,
        failed,
        timings,
      };
    },
  );
  app.get(
    '/v1/models',
    { schema: { summary: 'Loaded models', response: { 200: json('Models', modelsResponse) } } },
    async () => ({ models: ctx.served.map(modelInfo) }),
  );
}

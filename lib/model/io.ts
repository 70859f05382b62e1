import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';

/** File names of a saved tfjs model inside its folder (the tfjs "layers-model" format). */
export const MODEL_JSON = 'model.json';
export const MODEL_WEIGHTS = 'weights.bin';

/**
 * Saves a LayersModel as `model.json` + `weights.bin` (readable by any tfjs loader), each file atomic.
 * Weights are written first so that a crash leaves either no model.json or a complete pair.
 */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const weights =
        data === undefined
          ? new ArrayBuffer(0)
          : tf.io.concatenateArrayBuffers(Array.isArray(data) ? data : [data]);
      await writeFileAtomic(join(dir, MODEL_WEIGHTS), new Uint8Array(weights));
      await writeJsonAtomic(join(dir, MODEL_JSON), {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [MODEL_WEIGHTS], weights: artifacts.weightSpecs ?? [] }],
      });
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
}

interface ModelJson {
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

/** Loads a model saved by `saveModel` (or any single-folder tfjs layers model). */
export async function loadModel(dir: string): Promise<tf.LayersModel> {
  const jsonPath = join(dir, MODEL_JSON);
  let json: ModelJson;
  try {
    json = JSON.parse(await readFile(jsonPath, 'utf8')) as ModelJson;
  } catch (err) {
    throw new UserError('INVALID_MODEL', `${jsonPath}: cannot read tfjs model (${(err as Error).message})`, {
      cause: err,
    });
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new UserError(
      'INVALID_MODEL',
      `${jsonPath}: not a tfjs layers model (missing modelTopology or weightsManifest)`,
    );
  }
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  // A process that has not selected a backend yet (a worker's first step that loads a model, e.g.
  // checkpoint on a host where validate ran elsewhere) initialises the default one first; a no-op
  // once one is active.
  await tf.ready();
  const buffers = await Promise.all(
    json.weightsManifest
      .flatMap((g) => g.paths)
      .map(async (p) => {
        const buf = await readFile(join(dir, p));
        return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
      }),
  );
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs,
      weightData: tf.io.concatenateArrayBuffers(buffers),
    }),
  );
}

/**
 * A tiny, fully synthetic run directory for the evaluation/report tests: a tensor cache (32 px,
 * good val images, a test split with two defect types and masks), a random-init U-Net-lite [4,8] as
 * the "best model", and hand-made upstream step results. No training: the metrics are whatever a
 * random model gives; the tests check plumbing, files and consistency, not quality.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { defaultTrainingConfig, type TrainingConfig } from '../../lib/config/schema';
import type { ImageRecord } from '../../lib/data/mvtec';
import { readCachedSplit, writeTensorCache } from '../../lib/data/tensor-cache';
import { readScoresFile } from '../../lib/eval/scores-file';
import { createScoringEngine } from '../../lib/eval/scoring-engine';
import type { ScorableModel } from '../../lib/infer/scorable-model';
import { saveModel } from '../../lib/model/io';
import { buildUNetLite } from '../../lib/models/autoencoder/unet';
import type { JsonValue, StepActivity, StepContext, StepResult } from '../../lib/steps/contracts';
import { artifact, finishStep, inputPath } from '../../lib/steps/result';

export const SIZE = 32;

/** `kind`: 'good'; 'good+spot' (a bright unlabelled spot: a false positive); a defect type; '<type>~' (a faint one). */
function image(seed: number, kind: string): { img: Uint8Array; mask: Uint8Array } {
  const defect = !kind.startsWith('good');
  const spot = kind === 'good+spot';
  const faint = kind.endsWith('~');
  const img = new Uint8Array(SIZE * SIZE * 3);
  const mask = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const inBox = x >= 8 + (seed % 5) && x < 16 + (seed % 5) && y >= 10 && y < 18;
      const inDefect = defect && inBox;
      if (inDefect) mask[y * SIZE + x] = 1;
      for (let c = 0; c < 3; c++) {
        const base = 100 + 60 * Math.sin((x + seed) / 5) + 30 * Math.cos((y * (c + 1)) / 7);
        const bright = (inDefect && !faint) || (spot && inBox);
        const v = bright ? 250 : inDefect ? base + 4 : base;
        img[(y * SIZE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  return { img, mask };
}

function split(
  name: 'train' | 'val' | 'test' | 'holdout',
  kinds: string[],
): { images: Uint8Array; masks: Uint8Array | null; records: ImageRecord[] } {
  const images = new Uint8Array(kinds.length * SIZE * SIZE * 3);
  const masks = new Uint8Array(kinds.length * SIZE * SIZE);
  const records = kinds.map((kind, i): ImageRecord => {
    const { img, mask } = image(i * 7 + name.length, kind);
    const type = kind.replace(/[~]$/, '').replace('good+spot', 'good');
    images.set(img, i * img.length);
    masks.set(mask, i * mask.length);
    const labelled = name === 'test' || name === 'holdout';
    const dir = labelled ? `${name}/${type}` : 'train/good';
    return {
      id: `${dir}/${name}${String(i).padStart(3, '0')}`,
      source: `widget/${dir}/${name},${i}.png`, // a comma, to exercise CSV quoting
      split: name,
      defectType: type,
      label: type === 'good' ? 0 : 1,
      maskSource: type === 'good' ? null : `widget/ground_truth/${type}/${i}_mask.png`,
    };
  });
  return { images, masks: name === 'test' || name === 'holdout' ? masks : null, records };
}

export interface EvalRun {
  runDir: string;
  config: TrainingConfig;
  results: Partial<Record<StepActivity, StepResult>>;
  ctx(activity: StepActivity, params?: Record<string, JsonValue>): StepContext;
}

/**
 * `opts.runDir`: where the run goes (default: a new temp folder); `opts.runId`: its id (default r1);
 * `opts.holdout`: image kinds of a held-back split (none by default).
 */
export async function makeEvalRun(
  opts: { runDir?: string; runId?: string; holdout?: string[] } = {},
): Promise<EvalRun> {
  const runDir = opts.runDir ?? (await mkdtemp(join(tmpdir(), 'eval-run-')));
  const config: TrainingConfig = { ...defaultTrainingConfig(), image_size: SIZE, model: { widths: [4, 8] } };
  const run: EvalRun = {
    runDir,
    config,
    results: {},
    ctx(activity, params = {}) {
      return {
        runDir,
        pipeline: 'test',
        runId: opts.runId ?? 'r1',
        category: 'widget',
        dataRoot: join(runDir, 'data'),
        step: activity,
        stepDir: join(runDir, 'widget', activity),
        config,
        params,
        inputs: { ...run.results },
      };
    },
  };
  const pre = run.ctx('preprocess');
  const manifest = await writeTensorCache(
    pre.stepDir,
    {
      category: 'widget',
      dataRoot: pre.dataRoot,
      size: SIZE,
      defectTypes: ['crack', 'scratch'],
      skipped: [],
    },
    {
      train: split('train', ['good', 'good']),
      val: split('val', ['good', 'good', 'good', 'good', 'good']),
      test: split('test', ['good', 'good', 'good+spot', 'crack', 'crack', 'scratch', 'scratch', 'scratch~']),
      ...(opts.holdout ? { holdout: split('holdout', opts.holdout) } : {}),
    },
  );
  run.results.preprocess = await finishStep(
    pre,
    'preprocess',
    new Date(),
    [await artifact(pre, 'manifest', join(pre.stepDir, 'manifest.json'))],
    { test: manifest.splits.test.count },
  );
  const train = run.ctx('train');
  const model = buildUNetLite({ imageSize: SIZE, widths: [4, 8], seed: 3 });
  await saveModel(model, join(train.stepDir, 'best'));
  model.dispose();
  run.results.train = await finishStep(
    train,
    'train',
    new Date(),
    [await artifact(train, 'best_model', join(train.stepDir, 'best', 'model.json'))],
    { backend: 'wasm', peakRssMb: 512, epochs: 1 },
  );
  return run;
}

/**
 * Scores the eval run's test split with a loaded package and checks every image score against what
 * the run's validate step wrote (to `digits`); returns the maps. The package and validate must agree.
 */
export async function expectPackageScoresAsValidate(
  run: EvalRun,
  model: ScorableModel,
  digits: number,
): Promise<Float32Array> {
  const test = await readCachedSplit(join(run.runDir, 'widget', 'preprocess'), 'test');
  const cfg = run.config.anomaly_map;
  const engine = await createScoringEngine('auto', [{ model, anomalyMap: cfg }]);
  try {
    const x = Float32Array.from(test.images, (v) => v / 255);
    const out = await engine.score(model, x, test.count, SIZE, cfg, 4);
    const scores = await readScoresFile(inputPath(run.ctx('report'), 'validate', 'scores'));
    for (let i = 0; i < test.count; i++) expect(out.scores[i]).toBeCloseTo(scores.test[i].score, digits);
    return out.maps;
  } finally {
    await engine.release();
  }
}

/**
 * Champion/challenger (lib/package/promote-step, lib/package/champion): the first package of a category
 * becomes its champion; a better challenger replaces it; a worse one does not (and serving a runs folder
 * keeps serving the champion, not the newest package); rollback goes back to the previous champion, and
 * a running server switches to it without a restart.
 * Real steps on the tiny synthetic run of test/support/eval-run (three runs under one runs root).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingConfig } from '../lib/config/schema';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import {
  CHAMPION_HISTORY,
  championPath,
  promotionDecision,
  readChampion,
  rollbackChampion,
  writeChampion,
} from '../lib/package/champion';
import { packageStep } from '../lib/package/package-step';
import { promoteStep } from '../lib/package/promote-step';
import { reportStep } from '../lib/report/report-step';
import { loadServedModels } from '../lib/serve/models';
import { startServer } from '../lib/serve/start';
import { type JsonValue, localHooks, type StepResult } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { trainStep } from '../lib/train/train-step';
import { makeEvalRun } from './support/eval-run';
import { useWasm } from './support/tiny-package';

let root: string;

/** One run: the eval run's random-init autoencoder, or a PatchCore fitted on its good images. */
async function runWith(
  runId: string,
  kind: 'autoencoder' | 'patchcore',
  opts: { runsRoot?: string; holdout?: string[] } = {},
): Promise<StepResult> {
  const run = await makeEvalRun({
    runDir: join(opts.runsRoot ?? root, 'test', runId),
    runId,
    holdout: opts.holdout,
  });
  if (kind === 'patchcore') {
    run.config.model = {
      ...run.config.model,
      kind: 'patchcore',
      patchcore: { coreset_ratio: 1, smoothing_sigma: 1 },
    } as TrainingConfig['model'];
    run.results.train = await trainStep(run.ctx('train'), localHooks());
  }
  run.results.validate = await validateStep(run.ctx('validate'), localHooks());
  run.results.checkpoint = await checkpointStep(run.ctx('checkpoint'), localHooks());
  run.results.threshold = await thresholdStep(run.ctx('threshold'), localHooks());
  run.results.report = await reportStep(run.ctx('report'), localHooks());
  run.results.package = await packageStep(run.ctx('package'), localHooks());
  return promoteStep(run.ctx('promote', { tolerance: 0.01 } as Record<string, JsonValue>), localHooks());
}

beforeAll(async () => {
  await useWasm();
  root = await mkdtemp(join(tmpdir(), 'promote-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('promotionDecision', () => {
  it('promotes the first model, a not-worse one, and nothing worse beyond the tolerance', () => {
    const m = (a: number | null) => ({ imageAuroc: a, pixelAuroc: null, images: 8 });
    expect(promotionDecision(m(0.7), null, 0.01).promote).toBe(true);
    expect(promotionDecision(m(0.895), m(0.9), 0.01).promote).toBe(true);
    expect(promotionDecision(m(0.88), m(0.9), 0.01)).toEqual({
      promote: false,
      reason: "image AUROC 0.880 is worse than the champion's 0.900 by more than 0.01",
    });
    expect(promotionDecision(m(null), m(0.9), 0.01).promote).toBe(true);
  });

  it('remembers at most CHAMPION_HISTORY earlier champions', async () => {
    const path = join(root, 'history.json');
    for (let i = 0; i < CHAMPION_HISTORY + 5; i++) {
      await writeChampion(path, {
        pipeline: 'p',
        category: 'c',
        packageDir: `/pkg/${i}`,
        runId: `r${i}`,
        metrics: { imageAuroc: 1, pixelAuroc: null, images: 1 },
        promotedAt: new Date().toISOString(),
        reason: 'test',
        previous: await readChampion(path),
      });
    }
    let depth = 0;
    for (let p = await readChampion(path); p; p = p.previous) depth++;
    expect(depth).toBe(CHAMPION_HISTORY + 1);
  });
});

describe('promote step', () => {
  it('keeps a better champion against a worse challenger; serve serves the champion; rollback goes back', async () => {
    const pointer = championPath(root, 'test', 'widget');
    const first = await runWith('r1', 'autoencoder');
    expect(first.summary).toMatchObject({
      promoted: true,
      reason: 'first model of this category, on the test split (8 images)',
      comparedOn: 'test',
      champion: null,
    });
    const ae = (first.summary.challenger as { imageAuroc: number }).imageAuroc;

    const second = await runWith('r2', 'patchcore');
    const pc = (second.summary.challenger as { imageAuroc: number }).imageAuroc;
    // The champion (r1's autoencoder) was re-scored on the same test split: the same metrics as then.
    expect((second.summary.champion as { imageAuroc: number }).imageAuroc).toBeCloseTo(ae, 6);
    console.log(`promote: random-init autoencoder image AUROC ${ae.toFixed(3)}, PatchCore ${pc.toFixed(3)}`);
    expect(pc).toBeGreaterThan(ae + 0.05);
    expect(second.summary.promoted).toBe(true);
    expect((await readChampion(pointer))?.runId).toBe('r2');

    const third = await runWith('r3', 'autoencoder');
    expect(third.summary.promoted).toBe(false);
    expect(String(third.summary.reason)).toMatch(/is worse than the champion's/);
    const kept = await readChampion(pointer);
    expect(kept?.runId).toBe('r2');
    expect(kept?.previous?.runId).toBe('r1');
    // Stored relative to the runs root (portable: a moved folder, a bucket and its mirrors), read absolute.
    const raw = JSON.parse(await readFile(pointer, 'utf8'));
    expect(raw.packageDir).toBe('test/r2/widget/package/package');
    expect(raw.previous.packageDir).toBe('test/r1/widget/package/package');
    expect(kept?.packageDir).toBe(join(root, 'test', 'r2', 'widget', 'package', 'package'));

    // r3 is the newest package, but the champion is served.
    const { models, skipped } = await loadServedModels(root);
    expect(models.map((m) => m.pkg.dir)).toEqual([join(root, 'test', 'r2', 'widget', 'package', 'package')]);
    expect(
      skipped.some((s) => s.dir.includes(join('r3', 'widget')) && /not the champion/.test(s.reason)),
    ).toBe(true);

    // A running server switches to a new champion without a restart.
    const server = await startServer({
      models: root,
      port: 0,
      engine: 'auto',
      championPollMs: 100,
      logger: false,
    });
    try {
      const image = (
        await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } })
          .png()
          .toBuffer()
      ).toString('base64');
      const predict = async () =>
        (
          await server.app.inject({
            method: 'POST',
            url: '/v1/predict?heatmap=false',
            payload: { category: 'widget', image },
          })
        ).json();
      expect((await predict()).model.runId).toBe('r2');

      const back = await rollbackChampion(pointer);
      expect(back.runId).toBe('r1');
      expect((await readChampion(pointer))?.reason).toBe('rolled back from r2');
      await expect(rollbackChampion(pointer)).rejects.toThrow(/no predecessor to roll back to/);
      const deadline = Date.now() + 15_000;
      let runId = '';
      while (Date.now() < deadline) {
        runId = (await server.app.inject({ method: 'GET', url: '/v1/models' })).json().models[0].runId;
        if (runId === 'r1') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(runId).toBe('r1');
      const after = await predict();
      expect(after.model.runId).toBe('r1');
      expect(Number.isFinite(after.score)).toBe(true);
    } finally {
      await server.app.close();
    }
  });

  it('decides on the held-back split when the dataset has one', async () => {
    const runsRoot = join(root, 'holdout-runs');
    const holdout = ['good', 'good', 'good', 'crack', 'scratch', 'scratch~'];
    const first = await runWith('h1', 'autoencoder', { runsRoot, holdout });
    expect(first.summary).toMatchObject({ promoted: true, comparedOn: 'holdout' });
    expect((first.summary.challenger as { images: number }).images).toBe(holdout.length);
    const second = await runWith('h2', 'patchcore', { runsRoot, holdout });
    expect(second.summary.comparedOn).toBe('holdout');
    expect(String(second.summary.reason)).toMatch(/on the holdout split \(6 images\)$/);
    // The champion was re-scored on the same held-back images.
    expect((second.summary.champion as { images: number }).images).toBe(holdout.length);
  });
});

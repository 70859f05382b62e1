import '@tensorflow/tfjs-backend-wasm';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { thresholdStep } from '../lib/eval/threshold-step';
import { validateStep } from '../lib/eval/validate-step';
import { packageStep } from '../lib/package/package-step';
import type { CategoryReport } from '../lib/report/category-report';
import { toCsv } from '../lib/report/csv';
import { reportStep } from '../lib/report/report-step';
import { type SummaryJson, writeSummary } from '../lib/report/summary';
import { localHooks, type StepResult } from '../lib/steps/contracts';
import { checkpointStep } from '../lib/train/checkpoint-step';
import { type EvalRun, makeEvalRun } from './support/eval-run';

/** RFC 4180 parser (quoted fields, doubled quotes, CRLF), strict enough to catch a broken writer. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') {
      if (field !== '') throw new Error(`quote inside an unquoted field at ${i}`);
      quoted = true;
    } else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += ch;
  }
  if (quoted) throw new Error('unterminated quoted field');
  if (field !== '' || row.length) throw new Error('last line not terminated by CRLF');
  return rows;
}

let run: EvalRun;
let report: StepResult;

beforeAll(async () => {
  await tf.setBackend('wasm');
  run = await makeEvalRun();
  run.results.validate = await validateStep(run.ctx('validate'), localHooks());
  run.results.checkpoint = await checkpointStep(run.ctx('checkpoint'), localHooks());
  run.results.threshold = await thresholdStep(run.ctx('threshold'), localHooks());
  report = await reportStep(run.ctx('report'), localHooks());
});
afterAll(async () => {
  if (run.runDir) await rm(run.runDir, { recursive: true, force: true });
});

const path = (name: string) => join(run.runDir, report.outputs.find((o) => o.name === name)!.path);

describe('report step', () => {
  it('writes all artifacts; report.json has no NaN/Infinity and explains undefined metrics', async () => {
    expect(report.outputs.map((o) => o.name)).toEqual([
      'report_md',
      'report_html',
      'report_json',
      'predictions_csv',
    ]);
    const text = await readFile(path('report_json'), 'utf8');
    expect(text).not.toMatch(/NaN|Infinity/);
    const r = JSON.parse(text) as CategoryReport;
    expect(r.testImages).toBe(8);
    expect(r.perDefectType.map((d) => d.defectType)).toEqual(['crack', 'scratch']);
    expect(r.thresholds.selected).toBe('mean_std'); // a handful of good validation images
    expect(r.thresholds.strategies.find((s) => s.strategy === 'percentile')?.unreliable).toMatch(
      /needs at least 100/,
    );
    expect(r.thresholds.strategies.find((s) => s.strategy === 'f1')?.reason).toMatch(/needs defective/);
    for (const m of [r.image.auroc, r.image.ap, r.pixel.auroc, r.pixel.aupro]) {
      expect(m.value === null ? typeof m.reason : typeof m.value).toBe(
        m.value === null ? 'string' : 'number',
      );
    }
    expect(r.training).toEqual({ model: null, backend: 'wasm', peakRssMb: 512 });
    expect(r.targets.find((t) => t.name.startsWith('training peak'))?.met).toBe(true);
    // The fixture's 'good+spot' image is a false positive; the faint scratch is a false negative.
    expect(r.worstFalsePositives).toContain(2);
    expect(r.worstFalseNegatives).toContain(7);
    for (const f of [
      'tiles/fp-0.png',
      'tiles/fn-0.png',
      'plots/roc.svg',
      'plots/roc.png',
      'plots/pr.png',
      'plots/histogram.svg',
    ]) {
      expect((await stat(join(run.runDir, 'widget', 'report', f))).size).toBeGreaterThan(500);
    }
  });

  it('predictions.csv agrees with report.json row by row', async () => {
    const r = JSON.parse(await readFile(path('report_json'), 'utf8')) as CategoryReport;
    const rows = parseCsv(await readFile(path('predictions_csv'), 'utf8'));
    expect(rows[0]).toEqual(['path', 'defect_type', 'label', 'score', 'normalised_score', 'prediction']);
    expect(rows).toHaveLength(r.predictions.length + 1);
    let positives = 0;
    r.predictions.forEach((p, i) => {
      const [src, type, label, score, norm, pred] = rows[i + 1];
      expect(src).toBe(p.path);
      expect(src).toContain(','); // the fixture's paths need quoting
      expect(type).toBe(p.defectType);
      expect(Number(label)).toBe(p.label);
      expect(Number(score)).toBe(p.score);
      expect(Number(norm)).toBe(p.normalisedScore);
      expect(Number(pred)).toBe(p.prediction);
      // Prediction, threshold and normalised score tell the same story.
      expect(p.prediction).toBe(p.score >= r.thresholds.imageThreshold ? 1 : 0);
      expect(p.normalisedScore >= 0.5).toBe(p.prediction === 1);
      positives += p.prediction;
    });
    const c = r.image.atThreshold.confusion;
    expect(c.tp + c.fp).toBe(positives);
  });

  it('HTML is self-contained; Markdown links the PNGs; the package gets metrics.json', async () => {
    const html = await readFile(path('report_html'), 'utf8');
    expect(html).toContain('data:image/png;base64,');
    expect(html).not.toMatch(/src="(?!data:)/);
    const md = await readFile(path('report_md'), 'utf8');
    expect(md).toContain('](plots/roc.png)');
    expect(md).toMatch(/undefined: needs defective validation images/);
    run.results.report = report;
    run.results.package = await packageStep(run.ctx('package'), localHooks());
    const metrics = JSON.parse(
      await readFile(join(run.runDir, 'widget', 'package', 'package', 'metrics.json'), 'utf8'),
    ) as Record<string, unknown>;
    expect(metrics.strategy).toBe('mean_std');
  });

  it('summary covers completed and failed categories with a chart', async () => {
    const out = await writeSummary(run.runDir, [
      { category: 'widget', status: 'completed', reportJson: path('report_json') },
      { category: 'gadget', status: 'failed', error: 'train: out of memory' },
    ]);
    const s = JSON.parse(await readFile(out.summaryJson, 'utf8')) as SummaryJson;
    expect(s.categories.map((c) => c.status)).toEqual(['completed', 'failed']);
    expect(s.categories[1].imageAuroc).toEqual({ value: null, reason: 'category failed' });
    const md = await readFile(out.summaryMd, 'utf8');
    expect(md).toContain('gadget | failed: train: out of memory (category failed) | – |');
    expect(JSON.stringify(s)).not.toMatch(/NaN|Infinity/);
    if (s.categories[0].imageAuroc.value !== null) {
      expect((await stat(join(run.runDir, 'summary', 'plots', 'image-auroc.png'))).size).toBeGreaterThan(500);
    }
  });

  it('CSV quoting', () => {
    expect(toCsv(['a', 'b'], [['x,y', 'say "hi"']])).toBe('a,b\r\n"x,y","say ""hi"""\r\n');
  });
});

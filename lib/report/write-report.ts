import { join } from 'node:path';
import { formatMetric, type MetricValue } from '../eval/metric-value';
import { inferenceEngineLabel } from '../eval/scores-file';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import type { CategoryReport, ReportInput } from './category-report';
import { toCsv } from './csv';
import { type Block, renderHtml, renderMarkdown } from './doc';
import { histogramPlot, prPlot, type RenderedPlot, rocPlot } from './plots';
import type { TargetCheck } from './targets';
import { renderTile } from './tiles';

export interface ReportFiles {
  reportMd: string;
  reportHtml: string;
  reportJson: string;
  predictionsCsv: string;
}

export const PREDICTION_COLUMNS = ['path', 'defect_type', 'label', 'score', 'normalised_score', 'prediction'];

const fmt = (m: MetricValue) => formatMetric(m);
const num = (v: number | null, digits = 4) => (v === null ? 'n/a' : v.toFixed(digits));

export function targetRows(targets: TargetCheck[]): string[][] {
  return targets.map((t) => [
    t.name,
    t.target,
    t.value === null
      ? (t.note ?? 'not measured')
      : `${Number(t.value.toFixed(4))}${t.unit ? ` ${t.unit}` : ''}`,
    t.met === null ? '–' : t.met ? 'yes' : 'no',
  ]);
}

async function writePlot(dir: string, name: string, plot: RenderedPlot): Promise<string> {
  await writeFileAtomic(join(dir, 'plots', `${name}.svg`), plot.svg);
  await writeFileAtomic(join(dir, 'plots', `${name}.png`), plot.png);
  return `plots/${name}.png`;
}

/** Tiles of the worst errors; returns report-relative paths with captions. */
async function writeTiles(dir: string, report: CategoryReport, input: ReportInput) {
  const { test, testMaps } = input;
  const size = report.imageSize;
  const px = size * size;
  // One colour scale for every tile: from the lowest map value to the 99.9th percentile of the test maps.
  const sorted = Float32Array.from(testMaps).sort();
  const lo = sorted[0] ?? 0;
  const hi = sorted[Math.floor(0.999 * (sorted.length - 1))] ?? 1;
  const tiles = async (kind: 'fp' | 'fn', indices: number[]) =>
    Promise.all(
      indices.map(async (i, k) => {
        const p = report.predictions[i];
        const png = await renderTile({
          image: test.images.subarray(i * px * 3, (i + 1) * px * 3),
          map: testMaps.subarray(i * px, (i + 1) * px),
          mask: test.masks && test.size === size ? test.masks.subarray(i * px, (i + 1) * px) : null,
          size,
          range: [lo, hi],
          pixelThreshold: report.thresholds.pixelThreshold,
        });
        const src = `tiles/${kind}-${k}.png`;
        await writeFileAtomic(join(dir, src), png);
        return {
          src,
          caption: `${p.id} (${p.defectType}), score ${p.score.toPrecision(4)}, normalised ${p.normalisedScore.toFixed(3)}`,
        };
      }),
    );
  return {
    fp: await tiles('fp', report.worstFalsePositives),
    fn: await tiles('fn', report.worstFalseNegatives),
  };
}

export function categoryBlocks(
  r: CategoryReport,
  images: { roc: string; pr: string; hist: string },
  tiles: { fp: { src: string; caption: string }[]; fn: { src: string; caption: string }[] },
): Block[] {
  const im = r.image;
  const th = r.thresholds;
  const at = im.atThreshold;
  const blocks: Block[] = [
    { kind: 'h1', text: `Anomaly detection report: ${r.category}` },
    {
      kind: 'p',
      text: `${r.run ? `Pipeline \`${r.run.pipeline}\`, run \`${r.run.runId}\`. ` : ''}Generated ${r.generatedAt}. Test split: ${r.testImages} images (${im.positives} defective, ${im.negatives} good) at ${r.imageSize} px. Thresholds were fitted on validation data only; every number below is on the test split.`,
    },
    { kind: 'h2', text: 'Targets' },
    { kind: 'table', header: ['quantity', 'target', 'value', 'met'], rows: targetRows(r.targets) },
    { kind: 'h2', text: 'Metrics' },
    {
      kind: 'table',
      header: ['metric', 'value'],
      rows: [
        ['image AUROC', fmt(im.auroc)],
        ['image average precision', fmt(im.ap)],
        [`image F1 at the threshold (${th.imageThreshold.toPrecision(6)})`, fmt(at.f1)],
        ['image precision / recall at the threshold', `${fmt(at.precision)} / ${fmt(at.recall)}`],
        [
          'image F1-max (test split, for reference only)',
          `${fmt(im.f1Max.f1)}${im.f1Max.threshold === null ? '' : ` at ${im.f1Max.threshold.toPrecision(6)}`}`,
        ],
        ['pixel AUROC', fmt(r.pixel.auroc)],
        ['pixel average precision', fmt(r.pixel.ap)],
        [`pixel AUPRO@${r.pixel.fprLimit} (normalised)`, fmt(r.pixel.aupro)],
      ],
    },
    {
      kind: 'p',
      text: `Confusion matrix at the threshold: TP ${at.confusion.tp}, FP ${at.confusion.fp}, TN ${at.confusion.tn}, FN ${at.confusion.fn}. Pixel metrics over ${r.pixel.pixels} pixels (${r.pixel.defectPixels} defect pixels in ${r.pixel.regions} connected regions).`,
    },
    { kind: 'h2', text: 'Thresholds (fitted on the validation split)' },
    {
      kind: 'p',
      text: `Requested strategy **${th.requested}**, selected **${th.selected}**${
        th.fallback ? ` (fallback; ${th.fallback.reason})` : ''
      }. Validation images: ${th.validation.good} good, ${th.validation.defective} defective.`,
    },
    {
      kind: 'table',
      header: ['strategy', 'threshold', 'validation FPR', 'validation TPR', 'method', 'selected'],
      rows: th.strategies.map((s) => [
        s.strategy,
        s.value === null
          ? `undefined: ${s.reason}`
          : `${s.value.toPrecision(6)}${s.unreliable ? ` (not used: ${s.unreliable})` : ''}`,
        num(s.valFpr),
        num(s.valTpr),
        s.method,
        s.strategy === th.selected ? 'yes' : '',
      ]),
    },
    {
      kind: 'p',
      text: `Pixel threshold ${th.pixelThreshold.toPrecision(6)} (${th.pixelMethod}). Serving normalises scores piecewise-linearly: ${th.scoreNorm.min.toPrecision(6)} -> 0, threshold -> 0.5, ${th.scoreNorm.max.toPrecision(6)} -> 1.`,
    },
    { kind: 'h2', text: 'Curves and score distribution' },
    {
      kind: 'images',
      images: [
        { src: images.roc, caption: `ROC, image level (AUROC ${fmt(im.auroc)})` },
        { src: images.pr, caption: `Precision-recall, image level (AP ${fmt(im.ap)})` },
        { src: images.hist, caption: 'Test scores, good vs defective; dashed line: the selected threshold' },
      ],
    },
    { kind: 'h2', text: 'Per defect type (each type vs all good test images)' },
    {
      kind: 'table',
      header: ['defect type', 'images', 'mean score', 'detected at threshold', 'AUROC', 'AP'],
      rows: r.perDefectType.map((d) => [
        d.defectType,
        String(d.count),
        d.meanScore.toPrecision(4),
        fmt(d.detected),
        fmt(d.auroc),
        fmt(d.ap),
      ]),
    },
    { kind: 'h2', text: 'Worst false positives' },
    tiles.fp.length
      ? { kind: 'images', images: tiles.fp }
      : { kind: 'p', text: 'None: no good test image scored at or above the threshold.' },
    { kind: 'h2', text: 'Worst false negatives' },
    tiles.fn.length
      ? { kind: 'images', images: tiles.fn }
      : { kind: 'p', text: 'None: every defective test image scored at or above the threshold.' },
    {
      kind: 'p',
      text: 'Tiles: image | anomaly map overlay (one colour scale for all tiles) | ground-truth contour (green) and predicted region at the pixel threshold (red).',
    },
    { kind: 'h2', text: 'Latency and resources' },
    {
      kind: 'table',
      header: ['quantity', 'value'],
      rows: [
        ['model', r.training.model ?? 'not recorded'],
        ['inference engine', inferenceEngineLabel(r.latency)],
        ['inference batch size', String(r.latency.batchSize)],
        ['mean per image', `${r.latency.meanMsPerImage.toFixed(2)} ms`],
        ['p95 per image', `${r.latency.p95MsPerImage.toFixed(2)} ms`],
        ...(r.latency.deviceFallback ? [['inference device fallback', r.latency.deviceFallback]] : []),
        ['training engine', r.training.backend ?? 'not measured'],
        ...(r.training.deviceFallback ? [['training device fallback', r.training.deviceFallback]] : []),
        [
          'training peak RSS',
          r.training.peakRssMb === null ? 'not measured' : `${r.training.peakRssMb.toFixed(0)} MB`,
        ],
      ],
    },
  ];
  return blocks;
}

/** Writes report.md/html/json, predictions.csv, plots/ and tiles/ into `dir`. */
export async function writeCategoryReport(
  dir: string,
  report: CategoryReport,
  input: ReportInput,
): Promise<ReportFiles> {
  const im = report.image;
  const good = report.predictions.filter((p) => p.label === 0).map((p) => p.score);
  const bad = report.predictions.filter((p) => p.label === 1).map((p) => p.score);
  const images = {
    roc: await writePlot(dir, 'roc', await rocPlot(im.roc.fpr, im.roc.tpr, `AUROC ${fmt(im.auroc)}`)),
    pr: await writePlot(dir, 'pr', await prPlot(im.pr.recall, im.pr.precision, `AP ${fmt(im.ap)}`)),
    hist: await writePlot(dir, 'histogram', await histogramPlot(good, bad, report.thresholds.imageThreshold)),
  };
  const tiles = await writeTiles(dir, report, input);
  const blocks = categoryBlocks(report, images, tiles);
  const files: ReportFiles = {
    reportMd: join(dir, 'report.md'),
    reportHtml: join(dir, 'report.html'),
    reportJson: join(dir, 'report.json'),
    predictionsCsv: join(dir, 'predictions.csv'),
  };
  await writeFileAtomic(
    files.predictionsCsv,
    toCsv(
      PREDICTION_COLUMNS,
      report.predictions.map((p) => [
        p.path,
        p.defectType,
        p.label,
        p.score,
        p.normalisedScore,
        p.prediction,
      ]),
    ),
  );
  await writeFileAtomic(files.reportMd, renderMarkdown(blocks));
  await writeFileAtomic(
    files.reportHtml,
    await renderHtml(blocks, `Anomaly report: ${report.category}`, dir),
  );
  await writeJsonAtomic(files.reportJson, report);
  return files;
}

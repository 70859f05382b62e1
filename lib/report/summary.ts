import { join } from 'node:path';
import { formatMetric, type MetricValue } from '../eval/metric-value';
import { inferenceEngineLabel } from '../eval/scores-file';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import type { CategoryReport } from './category-report';
import { type Block, renderHtml, renderMarkdown } from './doc';
import { aurocBarChart } from './plots';
import { readJson } from './read-json';
import { TARGETS, type TargetCheck } from './targets';

export interface SummaryCategoryInput {
  category: string;
  status: 'completed' | 'failed' | 'cancelled';
  error?: string;
  /** Absolute path of the category's report.json. */
  reportJson?: string;
}

export interface SummaryRow {
  category: string;
  status: SummaryCategoryInput['status'];
  error: string | null;
  /** Absolute path of the category's report.json; null when none could be read. */
  report: string | null;
  imageAuroc: MetricValue;
  imageAp: MetricValue;
  f1: MetricValue;
  pixelAuroc: MetricValue;
  aupro: MetricValue;
  strategy: string | null;
  meanMsPerImage: number | null;
  p95MsPerImage: number | null;
  backend: string | null;
  peakRssMb: number | null;
  targets: TargetCheck[];
}

export interface SummaryJson {
  version: 1;
  generatedAt: string;
  targets: typeof TARGETS;
  categories: SummaryRow[];
  /** Means over categories with a defined value (null when none). */
  mean: { imageAuroc: number | null; f1: number | null; pixelAuroc: number | null; aupro: number | null };
}

const noReport = (why: string): MetricValue => ({ value: null, reason: why });

async function row(c: SummaryCategoryInput): Promise<SummaryRow> {
  const empty = (why: string): SummaryRow => ({
    category: c.category,
    status: c.status,
    error: c.error ?? null,
    report: null,
    imageAuroc: noReport(why),
    imageAp: noReport(why),
    f1: noReport(why),
    pixelAuroc: noReport(why),
    aupro: noReport(why),
    strategy: null,
    meanMsPerImage: null,
    p95MsPerImage: null,
    backend: null,
    peakRssMb: null,
    targets: [],
  });
  if (!c.reportJson) return empty(c.status === 'completed' ? 'no report step ran' : `category ${c.status}`);
  let r: CategoryReport;
  try {
    r = await readJson<CategoryReport>(c.reportJson);
  } catch (err) {
    return { ...empty(`report unreadable: ${(err as Error).message}`) };
  }
  return {
    category: c.category,
    status: c.status,
    error: c.error ?? null,
    report: c.reportJson,
    imageAuroc: r.image.auroc,
    imageAp: r.image.ap,
    f1: r.image.atThreshold.f1,
    pixelAuroc: r.pixel.auroc,
    aupro: r.pixel.aupro,
    strategy: r.thresholds.selected,
    meanMsPerImage: r.latency.meanMsPerImage,
    p95MsPerImage: r.latency.p95MsPerImage,
    backend: inferenceEngineLabel(r.latency),
    peakRssMb: r.training.peakRssMb,
    targets: r.targets,
  };
}

function meanOf(values: MetricValue[]): number | null {
  const v = values.flatMap((m) => (m.value === null ? [] : [m.value]));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

/** "0.9712 ✓" / "0.81 ✗" / the reason, marking a target when one applies. */
function marked(m: MetricValue, target: TargetCheck | undefined): string {
  if (m.value === null) return formatMetric(m);
  return `${m.value.toFixed(4)}${target?.met === true ? ' ✓' : target?.met === false ? ' ✗' : ''}`;
}

function summaryBlocks(s: SummaryJson, chart: string | null): Block[] {
  const t = (r: SummaryRow, name: string) => r.targets.find((x) => x.name.startsWith(name));
  const opt = (v: number | null, unit: string, target?: TargetCheck) =>
    v === null
      ? 'not measured'
      : `${v.toFixed(unit === 'MB' ? 0 : 1)} ${unit}${target?.met === true ? ' ✓' : target?.met === false ? ' ✗' : ''}`;
  return [
    { kind: 'h1', text: 'Anomaly detection: summary of all categories' },
    {
      kind: 'p',
      text: `Generated ${s.generatedAt}. Targets of the original system: image AUROC > ${TARGETS.imageAuroc}, F1 > ${TARGETS.f1}, < ${TARGETS.latencyMs} ms per image, < 2 GB training memory (✓ met, ✗ missed).`,
    },
    {
      kind: 'table',
      header: [
        'category',
        'status',
        'image AUROC',
        'image AP',
        'F1 @ threshold',
        'pixel AUROC',
        'AUPRO@0.3',
        'threshold',
        'ms / image (mean, p95)',
        'backend',
        'training peak RSS',
      ],
      rows: s.categories.map((r) => [
        r.category,
        r.status + (r.error ? `: ${r.error}` : '') + (r.report ? '' : ` (${r.imageAuroc.reason})`),
        r.report ? marked(r.imageAuroc, t(r, 'image AUROC')) : '–',
        r.report ? formatMetric(r.imageAp) : '–',
        r.report ? marked(r.f1, t(r, 'F1')) : '–',
        r.report ? formatMetric(r.pixelAuroc) : '–',
        r.report ? formatMetric(r.aupro) : '–',
        r.strategy ?? '–',
        r.meanMsPerImage === null
          ? 'not measured'
          : `${opt(r.meanMsPerImage, 'ms', t(r, 'inference latency'))}, ${r.p95MsPerImage?.toFixed(1)} ms`,
        r.backend ?? '–',
        opt(r.peakRssMb, 'MB', t(r, 'training peak memory')),
      ]),
    },
    {
      kind: 'p',
      text: `Means over categories with a value: image AUROC ${s.mean.imageAuroc?.toFixed(4) ?? 'n/a'}, F1 ${s.mean.f1?.toFixed(4) ?? 'n/a'}, pixel AUROC ${s.mean.pixelAuroc?.toFixed(4) ?? 'n/a'}, AUPRO@0.3 ${s.mean.aupro?.toFixed(4) ?? 'n/a'}.`,
    },
    ...(chart
      ? [
          {
            kind: 'images' as const,
            images: [
              { src: chart, caption: `Image AUROC per category; dashed line: target ${TARGETS.imageAuroc}` },
            ],
          },
        ]
      : [{ kind: 'p' as const, text: 'No category has a defined image AUROC: no chart.' }]),
  ];
}

/** The run-level folder the summary writes (the only one outside the categories' step folders). */
export const SUMMARY_DIR = 'summary';

/** The cross-category summary at the end of a pipeline run: `<runDir>/summary/summary.{md,html,json}`. */
export async function writeSummary(
  runDir: string,
  categories: SummaryCategoryInput[],
): Promise<{ summaryMd: string; summaryHtml: string; summaryJson: string }> {
  const dir = join(runDir, SUMMARY_DIR);
  const rows = await Promise.all(categories.map(row));
  const summary: SummaryJson = {
    version: 1,
    generatedAt: new Date().toISOString(),
    targets: TARGETS,
    categories: rows,
    mean: {
      imageAuroc: meanOf(rows.map((r) => r.imageAuroc)),
      f1: meanOf(rows.map((r) => r.f1)),
      pixelAuroc: meanOf(rows.map((r) => r.pixelAuroc)),
      aupro: meanOf(rows.map((r) => r.aupro)),
    },
  };
  const bars = rows.flatMap((r) =>
    r.imageAuroc.value === null ? [] : [{ category: r.category, auroc: r.imageAuroc.value }],
  );
  let chart: string | null = null;
  if (bars.length) {
    const plot = await aurocBarChart(bars, TARGETS.imageAuroc);
    await writeFileAtomic(join(dir, 'plots', 'image-auroc.svg'), plot.svg);
    await writeFileAtomic(join(dir, 'plots', 'image-auroc.png'), plot.png);
    chart = 'plots/image-auroc.png';
  }
  const blocks = summaryBlocks(summary, chart);
  const out = {
    summaryMd: join(dir, 'summary.md'),
    summaryHtml: join(dir, 'summary.html'),
    summaryJson: join(dir, 'summary.json'),
  };
  await writeJsonAtomic(out.summaryJson, summary);
  await writeFileAtomic(out.summaryMd, renderMarkdown(blocks));
  await writeFileAtomic(out.summaryHtml, await renderHtml(blocks, 'Anomaly detection summary', dir));
  return out;
}

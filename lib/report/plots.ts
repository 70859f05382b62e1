import sharp from 'sharp';
import * as vega from 'vega';
import type { TopLevelSpec } from 'vega-lite';
import * as vl from 'vega-lite';
import type { Field } from 'vega-lite/types_unstable/channeldef.js';
import type { UnitSpec } from 'vega-lite/types_unstable/spec/index.js';

/**
 * Report plots: Vega-Lite specs rendered headless (no canvas) to SVG, rasterised to PNG with sharp.
 * Both are written: SVG for crisp zooming, PNG for viewers/Markdown renderers that refuse SVG.
 */
export interface RenderedPlot {
  svg: string;
  png: Buffer;
}

export async function renderSpec(spec: TopLevelSpec): Promise<RenderedPlot> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    const png = await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
    return { svg, png };
  } finally {
    view.finalize();
  }
}

const SIDE = 320;

function curveSpec(
  title: string,
  x: { field: string; title: string },
  y: { field: string; title: string },
  values: Record<string, number>[],
  opts: { interpolate: 'linear' | 'step-before'; diagonal: boolean },
): TopLevelSpec {
  const curve: UnitSpec<Field> = {
    data: { values },
    mark: { type: 'line', interpolate: opts.interpolate },
    encoding: {
      x: { field: x.field, type: 'quantitative', title: x.title, scale: { domain: [0, 1] } },
      y: { field: y.field, type: 'quantitative', title: y.title, scale: { domain: [0, 1] } },
      order: { field: 'i', type: 'quantitative' },
    },
  };
  const chance: UnitSpec<Field> = {
    data: {
      values: [
        { [x.field]: 0, [y.field]: 0 },
        { [x.field]: 1, [y.field]: 1 },
      ],
    },
    mark: { type: 'line', strokeDash: [4, 4], color: '#999' },
    encoding: { x: { field: x.field, type: 'quantitative' }, y: { field: y.field, type: 'quantitative' } },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: SIDE,
    height: SIDE,
    background: 'white',
    layer: opts.diagonal ? [curve, chance] : [curve],
  };
}

/** ROC curve from metrics.rocCurve; straight segments, so tied scores show as diagonal steps. */
export function rocPlot(fpr: number[], tpr: number[], label: string): Promise<RenderedPlot> {
  const values = fpr.map((f, i) => ({ i, fpr: f, tpr: tpr[i] }));
  return renderSpec(
    curveSpec(
      `ROC (${label})`,
      { field: 'fpr', title: 'false positive rate' },
      { field: 'tpr', title: 'true positive rate' },
      values,
      { interpolate: 'linear', diagonal: true },
    ),
  );
}

/** Precision-recall points; 'step-before' draws precision P_k over (R_k-1, R_k], the step rule of average precision. */
export function prPlot(recall: number[], precision: number[], label: string): Promise<RenderedPlot> {
  const values = recall.map((r, i) => ({ i, recall: r, precision: precision[i] }));
  return renderSpec(
    curveSpec(
      `Precision-recall (${label})`,
      { field: 'recall', title: 'recall' },
      { field: 'precision', title: 'precision' },
      values,
      { interpolate: 'step-before', diagonal: false },
    ),
  );
}

/** Score histogram, good vs defective, with the decision threshold as a vertical rule. */
export function histogramPlot(good: number[], defective: number[], threshold: number): Promise<RenderedPlot> {
  const values = [
    ...good.map((score) => ({ score, class: 'good' })),
    ...defective.map((score) => ({ score, class: 'defective' })),
  ];
  return renderSpec({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Test image scores',
    width: 2 * SIDE,
    height: SIDE * 0.7,
    background: 'white',
    layer: [
      {
        data: { values },
        mark: { type: 'bar', opacity: 0.6 },
        encoding: {
          x: { field: 'score', type: 'quantitative', bin: { maxbins: 40 }, title: 'anomaly score' },
          y: { aggregate: 'count', type: 'quantitative', stack: null, title: 'images' },
          color: {
            field: 'class',
            type: 'nominal',
            scale: { domain: ['good', 'defective'], range: ['#4c78a8', '#e45756'] },
          },
        },
      },
      {
        data: { values: [{ threshold }] },
        mark: { type: 'rule', color: 'black', strokeDash: [6, 3], strokeWidth: 2 },
        encoding: { x: { field: 'threshold', type: 'quantitative' } },
      },
    ],
  });
}

/** Image AUROC per category, with the original target (0.95) as a rule; undefined AUROCs are left out. */
export function aurocBarChart(
  rows: { category: string; auroc: number }[],
  target: number,
): Promise<RenderedPlot> {
  return renderSpec({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Image AUROC per category',
    width: Math.max(SIDE, rows.length * 40),
    height: SIDE * 0.8,
    background: 'white',
    layer: [
      {
        data: {
          values: rows.map((r) => ({ ...r, meets: r.auroc > target ? 'meets target' : 'below target' })),
        },
        mark: 'bar',
        encoding: {
          x: { field: 'category', type: 'nominal', sort: null, title: null },
          y: { field: 'auroc', type: 'quantitative', scale: { domain: [0, 1] }, title: 'image AUROC' },
          color: {
            field: 'meets',
            type: 'nominal',
            scale: { domain: ['meets target', 'below target'], range: ['#54a24b', '#e45756'] },
            title: null,
          },
        },
      },
      {
        data: { values: [{ target }] },
        mark: { type: 'rule', color: 'black', strokeDash: [6, 3] },
        encoding: { y: { field: 'target', type: 'quantitative' } },
      },
    ],
  });
}

import sharp from 'sharp';

/**
 * Example tiles for the report: [ image | heatmap overlay | image with contours ], one row per image.
 * Pixel compositing is done here on raw RGB (a colormap, an alpha blend and a 4-neighbour boundary
 * are a few lines and exact); sharp upscales (nearest neighbour, so pixels stay honest) and encodes PNG.
 */

/** Perceptually ordered colormap (viridis-like, 5 anchors, linear in between) for t in [0,1]. */
const ANCHORS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

export function colormap(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (ANCHORS.length - 1);
  const i = Math.min(Math.floor(x), ANCHORS.length - 2);
  const f = x - i;
  const a = ANCHORS[i];
  const b = ANCHORS[i + 1];
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)) as [number, number, number];
}

/** Boundary pixels of a binary mask: set, with at least one 4-neighbour unset (or at the border). */
export function contour(mask: ArrayLike<number>, size: number): Uint8Array {
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const p = y * size + x;
      if (!mask[p]) continue;
      const edge =
        x === 0 ||
        y === 0 ||
        x === size - 1 ||
        y === size - 1 ||
        !mask[p - 1] ||
        !mask[p + 1] ||
        !mask[p - size] ||
        !mask[p + size];
      if (edge) out[p] = 1;
    }
  return out;
}

export interface TileInput {
  /** size*size*3 RGB uint8. */
  image: Uint8Array;
  /** size*size raw anomaly map. */
  map: Float32Array;
  /** size*size 0|1 ground truth, or null (good image / no masks). */
  mask: Uint8Array | null;
  size: number;
  /** Map values mapped to the colormap range [lo, hi] (the same for all tiles of a report). */
  range: [number, number];
  pixelThreshold: number;
}

const GAP = 2;
const GT_COLOUR = [0, 255, 0];
const PRED_COLOUR = [255, 0, 0];

/** One PNG row: image | overlay (alpha 0.5) | image with ground-truth (green) and predicted (red) contours. */
export async function renderTile(t: TileInput, scale = 4): Promise<Buffer> {
  const { size } = t;
  const width = 3 * size + 2 * GAP;
  const raw = new Uint8Array(width * size * 3).fill(255);
  const [lo, hi] = t.range;
  const predicted = Uint8Array.from(t.map, (v) => (v >= t.pixelThreshold ? 1 : 0));
  const predEdge = contour(predicted, size);
  const gtEdge = t.mask ? contour(t.mask, size) : null;
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const p = y * size + x;
      const heat = colormap((t.map[p] - lo) / (hi - lo || 1));
      for (let c = 0; c < 3; c++) {
        const px = t.image[p * 3 + c];
        raw[(y * width + x) * 3 + c] = px;
        raw[(y * width + size + GAP + x) * 3 + c] = Math.round(0.5 * px + 0.5 * heat[c]);
        let v = px;
        if (predEdge[p]) v = PRED_COLOUR[c];
        if (gtEdge?.[p]) v = GT_COLOUR[c];
        raw[(y * width + 2 * (size + GAP) + x) * 3 + c] = v;
      }
    }
  return sharp(raw, { raw: { width, height: size, channels: 3 } })
    .resize(width * scale, size * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/**
 * Anomaly map (S*S floats) -> PNG images for people: a coloured heatmap, a binary predicted mask, and an
 * overlay of the heatmap on the input image.
 */
import sharp from 'sharp';

/**
 * Colour scale: map value / (2 * pixelThreshold), so the pixel threshold sits exactly in the middle of
 * the colour map (green-yellow) whatever the model's raw value range; red means clearly anomalous.
 */
export function heatLevel(v: number, pixelThreshold: number): number {
  const t = pixelThreshold > 0 ? v / (2 * pixelThreshold) : v;
  return Math.min(1, Math.max(0, t));
}

/** Jet colour map (blue -> cyan -> yellow -> red), t in [0,1]. */
export function jet(t: number): [number, number, number] {
  const c = (x: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(x))));
  return [c(4 * t - 3), c(4 * t - 2), c(4 * t - 1)];
}

function heatRgb(map: Float32Array, pixelThreshold: number): Buffer {
  const out = Buffer.alloc(map.length * 3);
  for (let i = 0; i < map.length; i++) {
    const [r, g, b] = jet(heatLevel(map[i], pixelThreshold));
    out[i * 3] = r;
    out[i * 3 + 1] = g;
    out[i * 3 + 2] = b;
  }
  return out;
}

/** Coloured heatmap, size x size, opaque RGB PNG. */
export function heatmapPng(map: Float32Array, size: number, pixelThreshold: number): Promise<Buffer> {
  return sharp(heatRgb(map, pixelThreshold), { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
}

/** Predicted defect mask: white where the map reaches the pixel threshold, size x size greyscale PNG. */
export function maskPng(map: Float32Array, size: number, pixelThreshold: number): Promise<Buffer> {
  const out = Buffer.alloc(map.length);
  for (let i = 0; i < map.length; i++) out[i] = map[i] >= pixelThreshold ? 255 : 0;
  return sharp(out, { raw: { width: size, height: size, channels: 1 } })
    .png()
    .toBuffer();
}

/** Fraction of pixels at or above the pixel threshold (a cheap "how much is defective" figure). */
export function defectArea(map: Float32Array, pixelThreshold: number): number {
  let n = 0;
  for (let i = 0; i < map.length; i++) if (map[i] >= pixelThreshold) n++;
  return map.length ? n / map.length : 0;
}

/** The heatmap stretched over the display image at 50% opacity (side by side is the web page's job). */
export async function overlayPng(
  image: { data: Buffer; width: number; height: number },
  map: Float32Array,
  size: number,
  pixelThreshold: number,
): Promise<Buffer> {
  const heat = await sharp(heatRgb(map, pixelThreshold), { raw: { width: size, height: size, channels: 3 } })
    .resize(image.width, image.height, { fit: 'fill', kernel: 'cubic' })
    .ensureAlpha(0.5)
    .png()
    .toBuffer();
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .composite([{ input: heat, blend: 'over' }])
    .png()
    .toBuffer();
}

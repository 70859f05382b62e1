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

/**
 * One jet channel. At module level on purpose: under tsx (esbuild keepNames) every closure created at
 * run time is renamed with Object.defineProperty, and a closure per pixel made a 128 px heatmap cost
 * ~10 ms of event-loop time per request (measured, bench:serve).
 */
const jetChannel = (x: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(x))));

/** Jet colour map (blue -> cyan -> yellow -> red), t in [0,1]. */
export function jet(t: number): [number, number, number] {
  return [jetChannel(4 * t - 3), jetChannel(4 * t - 2), jetChannel(4 * t - 1)];
}

/** jet(heatLevel(v)) per pixel, without a temporary array per pixel (same arithmetic, same bytes). */
function heatRgb(map: Float32Array, pixelThreshold: number): Buffer {
  const out = Buffer.alloc(map.length * 3);
  for (let i = 0; i < map.length; i++) {
    const t = heatLevel(map[i], pixelThreshold);
    out[i * 3] = jetChannel(4 * t - 3);
    out[i * 3 + 1] = jetChannel(4 * t - 2);
    out[i * 3 + 2] = jetChannel(4 * t - 1);
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

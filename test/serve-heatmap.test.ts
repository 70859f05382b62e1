import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { heatLevel, heatmapPng, jet, maskPng } from '../lib/serve/heatmap';

const size = 64;

/** Values across and beyond the colour scale, including the band edges of jet and exact thresholds. */
function testMap(pixelThreshold: number): Float32Array {
  const map = new Float32Array(size * size);
  for (let i = 0; i < map.length; i++) map[i] = ((i % 997) / 996) * 3 * pixelThreshold - 0.1;
  map[0] = pixelThreshold;
  map[1] = 2 * pixelThreshold;
  map[2] = pixelThreshold / 2;
  map[3] = Number.NaN;
  return map;
}

async function pixels(png: Buffer) {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, channels: info.channels, width: info.width, height: info.height };
}

describe('heatmap PNGs', () => {
  for (const pixelThreshold of [0.3, 0.0123, 0]) {
    it(`heatmap pixels are jet(heatLevel(v)) for every value (pixel threshold ${pixelThreshold})`, async () => {
      const map = testMap(pixelThreshold || 0.5);
      const img = await pixels(await heatmapPng(map, size, pixelThreshold));
      expect([img.width, img.height, img.channels]).toEqual([size, size, 3]);
      const expected = Buffer.alloc(map.length * 3);
      map.forEach((v, i) => {
        expected.set(jet(heatLevel(v, pixelThreshold)), i * 3);
      });
      expect(img.data.equals(expected)).toBe(true);
    });
  }

  it('the mask is white exactly where the map reaches the pixel threshold', async () => {
    const map = testMap(0.3);
    const img = await pixels(await maskPng(map, size, 0.3));
    // sharp writes the greyscale mask as an sRGB PNG: every channel carries the mask.
    const expected = [...map].flatMap((v) => Array<number>(img.channels).fill(v >= 0.3 ? 255 : 0));
    expect([...img.data]).toEqual(expected);
  });
});

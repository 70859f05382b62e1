/**
 * Connected ground-truth regions of a binary mask, 8-connected (what the official MVTec AD
 * evaluation uses: scipy.ndimage.label with a 3x3 structure of ones), for the per-region overlap
 * of AUPRO. Labels are 1..count in raster order of each region's first pixel; 0 is background.
 */
export interface Regions {
  labels: Int32Array;
  count: number;
  /** sizes[k] = pixel count of region k+1. */
  sizes: number[];
}

export function labelRegions8(mask: ArrayLike<number>, height: number, width: number): Regions {
  const labels = new Int32Array(height * width);
  const sizes: number[] = [];
  const stack: number[] = [];
  for (let start = 0; start < height * width; start++) {
    if (!mask[start] || labels[start]) continue;
    const label = sizes.length + 1;
    let size = 0;
    labels[start] = label;
    stack.push(start);
    // Iterative flood fill: a recursive one overflows the stack on large defects.
    while (stack.length > 0) {
      const p = stack.pop()!;
      size++;
      const y = Math.floor(p / width);
      const x = p - y * width;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = label;
            stack.push(q);
          }
        }
      }
    }
    sizes.push(size);
  }
  return { labels, count: sizes.length, sizes };
}

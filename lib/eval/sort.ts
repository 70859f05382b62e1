/**
 * Descending argsort for metric curves. Pixel-level metrics sort millions of map values: a
 * comparator sort of an index array takes seconds there, so Float32Arrays (what maps are) go through
 * an O(n) LSD radix sort on their order-preserving bit patterns instead. Other inputs (image scores,
 * fixtures in float64) are small and use a plain comparator sort so that no precision is lost.
 * Ties are adjacent in the result; their relative order is unspecified (metrics group them).
 */
export function argsortDescending(values: ArrayLike<number>): Uint32Array {
  const n = values.length;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(values[i])) throw new Error(`cannot rank scores: value ${i} is NaN`);
  }
  if (values instanceof Float32Array && n > 4096) return radixArgsortDescending(values);
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  return idx.sort((a, b) => values[b] - values[a]);
}

function radixArgsortDescending(values: Float32Array): Uint32Array {
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  // IEEE-754 to unsigned keys whose unsigned order is the numeric order; -0 folded into +0.
  const keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const b = bits[i] === 0x80000000 ? 0 : bits[i];
    keys[i] = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
  }
  let src = new Uint32Array(n);
  for (let i = 0; i < n; i++) src[i] = i;
  let dst = new Uint32Array(n);
  const counts = new Uint32Array(65536);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(keys[src[i]] >>> shift) & 0xffff]++;
    // Descending: the highest bucket starts at 0.
    let pos = 0;
    for (let b = 65535; b >= 0; b--) {
      const c = counts[b];
      counts[b] = pos;
      pos += c;
    }
    for (let i = 0; i < n; i++) {
      const j = src[i];
      dst[counts[(keys[j] >>> shift) & 0xffff]++] = j;
    }
    [src, dst] = [dst, src];
  }
  return src;
}

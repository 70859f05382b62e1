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
  const bits = new Int32Array(values.buffer, values.byteOffset, n);
  // IEEE-754 bits to keys whose unsigned order is the numeric order; -0 folded into +0. Kept in an
  // Int32Array and read with & / >> only: uint32 values >= 2^31 are not small integers in V8 and
  // make the passes several times slower.
  const keys = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = bits[i] === -0x80000000 ? 0 : bits[i];
    keys[i] = b < 0 ? ~b : b | 0x80000000;
  }
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const idx2 = new Uint32Array(n);
  const keys2 = new Int32Array(n);
  const counts = new Uint32Array(65536);
  // Two stable 16-bit passes (low half, then high half), keys carried along to keep reads sequential.
  radixPass(idx, keys, idx2, keys2, 0, counts);
  radixPass(idx2, keys2, idx, keys, 16, counts);
  return idx;
}

function radixPass(
  srcIdx: Uint32Array,
  srcKeys: Int32Array,
  dstIdx: Uint32Array,
  dstKeys: Int32Array,
  shift: number,
  counts: Uint32Array,
): void {
  const n = srcIdx.length;
  counts.fill(0);
  for (let i = 0; i < n; i++) counts[(srcKeys[i] >> shift) & 0xffff]++;
  // Descending: the highest bucket starts at 0.
  let pos = 0;
  for (let b = 65535; b >= 0; b--) {
    const c = counts[b];
    counts[b] = pos;
    pos += c;
  }
  for (let i = 0; i < n; i++) {
    const k = srcKeys[i];
    const p = counts[(k >> shift) & 0xffff]++;
    dstIdx[p] = srcIdx[i];
    dstKeys[p] = k;
  }
}

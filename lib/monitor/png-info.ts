/**
 * Width, height and TensorBoard colorspace of a PNG, read from its IHDR chunk, so callers can log
 * any PNG bytes without decoding them.
 */
export function pngInfo(png: Uint8Array): { width: number; height: number; colorspace: number } {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  const isPng = png.length >= 29 && sig.every((b, i) => png[i] === b);
  // IHDR is always the first chunk: length(4) "IHDR"(4) width(4) height(4) depth(1) colorType(1).
  if (!isPng || String.fromCharCode(png[12], png[13], png[14], png[15]) !== 'IHDR') {
    throw new Error('not a PNG image (bad signature or missing IHDR chunk)');
  }
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const colorType = png[25];
  // PNG color types: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA. Palette may hide alpha in tRNS;
  // TensorBoard only uses colorspace as a hint and decodes the PNG itself, so RGB is fine there.
  const colorspace = colorType === 0 ? 1 : colorType === 4 ? 2 : colorType === 6 ? 4 : 3;
  return { width: view.getUint32(16), height: view.getUint32(20), colorspace };
}

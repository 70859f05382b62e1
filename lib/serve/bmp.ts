/**
 * Minimal BMP decoder. sharp's prebuilt libvips has no BMP loader, and BMP is common from industrial
 * cameras, so the usual uncompressed variants are decoded here: 24/32-bit (BI_RGB, or BI_BITFIELDS
 * with byte-aligned masks) and 1/4/8-bit palette. RLE and other compressions are refused by name.
 */
export interface RawRgb {
  width: number;
  height: number;
  /** RGB, 3 bytes per pixel, top row first. */
  data: Uint8Array;
}

export class BmpError extends Error {}

/** Reads width/height from the header only (cheap: used to refuse oversized images before decoding). */
export function bmpDimensions(buf: Uint8Array): { width: number; height: number } {
  if (buf.length < 26) throw new BmpError('truncated BMP header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerSize = dv.getUint32(14, true);
  if (headerSize === 12) return { width: dv.getUint16(18, true), height: dv.getUint16(20, true) };
  if (buf.length < 26 || headerSize < 40) throw new BmpError(`unsupported BMP header size ${headerSize}`);
  return { width: Math.abs(dv.getInt32(18, true)), height: Math.abs(dv.getInt32(22, true)) };
}

export function decodeBmp(buf: Uint8Array): RawRgb {
  if (buf.length < 54 || buf[0] !== 0x42 || buf[1] !== 0x4d) throw new BmpError('not a BMP file');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dataOffset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  if (headerSize < 40) throw new BmpError(`unsupported BMP header size ${headerSize} (OS/2 bitmaps)`);
  const width = dv.getInt32(18, true);
  const rawHeight = dv.getInt32(22, true);
  const bpp = dv.getUint16(28, true);
  const compression = dv.getUint32(30, true);
  const height = Math.abs(rawHeight);
  const bottomUp = rawHeight > 0;
  if (width <= 0 || height === 0) throw new BmpError(`invalid BMP size ${width}x${rawHeight}`);
  const BI_RGB = 0;
  const BI_BITFIELDS = 3;
  if (compression !== BI_RGB && !(compression === BI_BITFIELDS && bpp === 32)) {
    throw new BmpError(
      `unsupported BMP compression ${compression} at ${bpp} bits per pixel (only uncompressed)`,
    );
  }
  // Channel byte offsets within a 32-bit pixel: BGRA order unless bitfield masks say otherwise.
  let shifts = { r: 16, g: 8, b: 0 };
  if (compression === BI_BITFIELDS) {
    const masks = [dv.getUint32(54, true), dv.getUint32(58, true), dv.getUint32(62, true)];
    const shiftOf = (m: number) => {
      for (const s of [0, 8, 16, 24]) if (m >>> 0 === (0xff << s) >>> 0) return s;
      throw new BmpError(`unsupported BMP bit masks 0x${m.toString(16)}`);
    };
    shifts = { r: shiftOf(masks[0]), g: shiftOf(masks[1]), b: shiftOf(masks[2]) };
  }
  let palette: Uint8Array | null = null;
  if (bpp === 1 || bpp === 4 || bpp === 8) {
    const colors = dv.getUint32(46, true) || 2 ** bpp;
    const start = 14 + headerSize;
    if (start + colors * 4 > buf.length) throw new BmpError('truncated BMP palette');
    palette = buf.subarray(start, start + colors * 4);
  } else if (bpp !== 24 && bpp !== 32) {
    throw new BmpError(`unsupported BMP depth ${bpp} bits per pixel`);
  }
  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  if (dataOffset + rowBytes * height > buf.length) throw new BmpError('truncated BMP pixel data');
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (bottomUp ? height - 1 - y : y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (palette) {
        const bit = x * bpp;
        const byte = buf[row + (bit >> 3)];
        const idx = (byte >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        if (idx * 4 + 2 >= palette.length) throw new BmpError(`BMP palette index ${idx} out of range`);
        out[o] = palette[idx * 4 + 2];
        out[o + 1] = palette[idx * 4 + 1];
        out[o + 2] = palette[idx * 4];
      } else if (bpp === 24) {
        const p = row + x * 3;
        out[o] = buf[p + 2];
        out[o + 1] = buf[p + 1];
        out[o + 2] = buf[p];
      } else {
        const v = dv.getUint32(row + x * 4, true);
        out[o] = (v >>> shifts.r) & 0xff;
        out[o + 1] = (v >>> shifts.g) & 0xff;
        out[o + 2] = (v >>> shifts.b) & 0xff;
      }
    }
  }
  return { width, height, data: out };
}

/** Encodes RGB as a 24-bit BMP (tests and fixtures only need this direction for round trips). */
export function encodeBmp(img: RawRgb): Uint8Array {
  const rowBytes = Math.ceil((img.width * 24) / 32) * 4;
  const size = 54 + rowBytes * img.height;
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x42;
  buf[1] = 0x4d;
  dv.setUint32(2, size, true);
  dv.setUint32(10, 54, true);
  dv.setUint32(14, 40, true);
  dv.setInt32(18, img.width, true);
  dv.setInt32(22, img.height, true);
  dv.setUint16(26, 1, true);
  dv.setUint16(28, 24, true);
  for (let y = 0; y < img.height; y++) {
    const row = 54 + (img.height - 1 - y) * rowBytes;
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 3;
      buf[row + x * 3] = img.data[i + 2];
      buf[row + x * 3 + 1] = img.data[i + 1];
      buf[row + x * 3 + 2] = img.data[i];
    }
  }
  return buf;
}

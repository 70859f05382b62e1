/**
 * Untrusted image bytes -> the model's input tensor data, following the package's preprocess.json.
 * The format is decided by magic bytes (never by file name or Content-Type, which clients get wrong),
 * and the pixel count is checked from the header before anything is decoded (decompression bombs).
 */
import sharp from 'sharp';
import type { PreprocessSpec } from '../package/package';
import { bmpDimensions, decodeBmp } from './bmp';

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'tiff' | 'bmp';
export const SUPPORTED_FORMATS: readonly ImageFormat[] = ['png', 'jpeg', 'webp', 'tiff', 'bmp'];

/** Default cap: 40 megapixels (e.g. 8000x5000); far above any camera image, far below a bomb. */
export const DEFAULT_MAX_PIXELS = 40_000_000;

export type ImageErrorCode = 'NOT_AN_IMAGE' | 'CORRUPT_IMAGE' | 'IMAGE_TOO_LARGE';

/** A problem with one input image; `code` maps to an HTTP status in the server, a row in the CLI. */
export class ImageInputError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ImageInputError';
  }
}

export function sniffImageFormat(buf: Uint8Array): ImageFormat | null {
  const at = (i: number, bytes: number[]) => bytes.every((b, k) => buf[i + k] === b);
  if (at(0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (at(0, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (at(0, [0x52, 0x49, 0x46, 0x46]) && at(8, [0x57, 0x45, 0x42, 0x50])) return 'webp';
  if (at(0, [0x49, 0x49, 0x2a, 0x00]) || at(0, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (at(0, [0x42, 0x4d]) && buf.length >= 26) return 'bmp';
  return null;
}

export interface DecodedImage {
  format: ImageFormat;
  /** Original size, before resizing. */
  width: number;
  height: number;
  /** imageSize*imageSize*3 floats in [0,1], NHWC, per preprocess.json. */
  tensor: Float32Array;
  /** With `displaySize`: the image as 8-bit RGB, at most displaySize per side (for overlays). */
  display: { data: Buffer; width: number; height: number } | null;
}

export interface DecodeOptions {
  maxPixels?: number;
  /** Display name for messages (file name / form field). */
  name?: string;
  /** Also return a display copy (for heatmap overlays) at most this many pixels per side. */
  displaySize?: number;
}

/**
 * Decoder pipeline up to "8-bit sRGB, 3 channels", exactly as the training data loader (lib/data/mvtec)
 * does it: alpha dropped (not flattened) and no EXIF rotation, or served inputs would differ from
 * the images the thresholds were fitted on.
 */
function normalised(buf: Uint8Array, format: ImageFormat, maxPixels: number): sharp.Sharp {
  return sharpInput(buf, format, maxPixels).removeAlpha().toColourspace('srgb');
}

function sharpInput(buf: Uint8Array, format: ImageFormat, maxPixels: number): sharp.Sharp {
  if (format === 'bmp') {
    const bmp = decodeBmp(buf);
    return sharp(Buffer.from(bmp.data.buffer, bmp.data.byteOffset, bmp.data.byteLength), {
      raw: { width: bmp.width, height: bmp.height, channels: 3 },
    });
  }
  // failOn 'error' (not the default 'warning') accepts the slightly-off JPEGs cameras write, but
  // truncated or garbled files still fail.
  return sharp(buf, { limitInputPixels: maxPixels, failOn: 'error' });
}

/** Greyscale stays 1 channel through some libvips paths; repeat it into RGB (extra channels dropped). */
function expandToRgb(data: Buffer, channels: number, pixels: number): Buffer {
  const out = Buffer.alloc(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    for (let c = 0; c < 3; c++) out[p * 3 + c] = data[p * channels + (channels >= 3 ? c : 0)];
  }
  return out;
}

function toTensor(data: Buffer, channels: number, pixels: number, divisor: number): Float32Array {
  const rgb = channels === 3 ? data : expandToRgb(data, channels, pixels);
  const out = new Float32Array(pixels * 3);
  for (let i = 0; i < out.length; i++) out[i] = rgb[i] / divisor;
  return out;
}

export async function decodeImage(
  buf: Uint8Array,
  spec: PreprocessSpec,
  opts: DecodeOptions = {},
): Promise<DecodedImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const label = opts.name ? `'${opts.name}'` : 'the upload';
  const format = sniffImageFormat(buf);
  if (!format) {
    throw new ImageInputError(
      'NOT_AN_IMAGE',
      `${label} is not an image this server reads (supported: ${SUPPORTED_FORMATS.join(', ')}; detected by content, not by name)`,
    );
  }
  let width: number;
  let height: number;
  try {
    if (format === 'bmp') ({ width, height } = bmpDimensions(buf));
    else {
      const meta = await sharp(buf, { limitInputPixels: false }).metadata();
      width = meta.width ?? 0;
      height = meta.height ?? 0;
    }
  } catch (err) {
    throw new ImageInputError(
      'CORRUPT_IMAGE',
      `${label} (${format}) cannot be read: ${(err as Error).message}`,
    );
  }
  if (width * height > maxPixels) {
    throw new ImageInputError(
      'IMAGE_TOO_LARGE',
      `${label} is ${width}x${height} (${(width * height).toLocaleString('en-US')} pixels); the limit is ${maxPixels.toLocaleString('en-US')} pixels`,
    );
  }
  try {
    const size = spec.imageSize;
    const small = await normalised(buf, format, maxPixels)
      .resize(size, size, { fit: spec.resize.fit, kernel: spec.resize.kernel })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const tensor = toTensor(small.data, small.info.channels, size * size, spec.scaling.divisor);
    let display: DecodedImage['display'] = null;
    if (opts.displaySize) {
      const d = await normalised(buf, format, maxPixels)
        .resize(opts.displaySize, opts.displaySize, { fit: 'inside', withoutEnlargement: true })
        .raw()
        .toBuffer({ resolveWithObject: true });
      const rgb =
        d.info.channels === 3 ? d.data : expandToRgb(d.data, d.info.channels, d.info.width * d.info.height);
      display = { data: rgb, width: d.info.width, height: d.info.height };
    }
    return { format, width, height, tensor, display };
  } catch (err) {
    if (err instanceof ImageInputError) throw err;
    throw new ImageInputError(
      'CORRUPT_IMAGE',
      `${label} (${format}) cannot be decoded: ${(err as Error).message}`,
    );
  }
}

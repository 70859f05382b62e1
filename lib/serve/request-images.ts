/**
 * Reads the images and the category out of a predict request: multipart/form-data (file fields + a
 * `category` field) or JSON (`{ category, image }` / `{ category, images: [...] }`, base64 or data URIs).
 * Only parsing and limits; the pixels are judged by image-input.
 */
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApiError } from './api-error';
import { jsonBatch, type jsonImage, jsonSingle } from './schemas';

export interface UploadedImage {
  name: string;
  data: Buffer;
}

export interface ImageRequest {
  category: string | undefined;
  images: UploadedImage[];
}

export interface RequestLimits {
  maxBodyBytes: number;
  maxFiles: number;
}

const base64Pattern = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes base64 (standard or URL-safe, whitespace allowed) or a `data:image/...;base64,` URI. */
function decodeBase64(value: string, where: string): Buffer {
  const comma = value.startsWith('data:') ? value.indexOf(',') : -1;
  if (value.startsWith('data:') && (comma < 0 || !value.slice(0, comma).endsWith(';base64'))) {
    throw new ApiError(
      400,
      'BAD_REQUEST',
      `${where}: data URI must be base64-encoded ('data:<type>;base64,...')`,
    );
  }
  const b64 = (comma >= 0 ? value.slice(comma + 1) : value).replace(/\s+/g, '');
  if (!base64Pattern.test(b64)) throw new ApiError(400, 'BAD_REQUEST', `${where}: not valid base64`);
  const buf = Buffer.from(b64, 'base64');
  if (buf.length === 0) throw new ApiError(400, 'MISSING_FIELD', `${where}: the image is empty`);
  return buf;
}

function fromJson(body: unknown, batch: boolean, limits: RequestLimits): ImageRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError(
      400,
      'BAD_JSON',
      'the JSON body must be an object like {"category": "...", "image": "<base64>"}',
    );
  }
  const toImage = (v: z.infer<typeof jsonImage>, where: string, fallbackName: string): UploadedImage =>
    typeof v === 'string'
      ? { name: fallbackName, data: decodeBase64(v, where) }
      : { name: v.name ?? fallbackName, data: decodeBase64(v.data, `${where}.data`) };
  if (!batch) {
    const parsed = jsonSingle.safeParse(body);
    if (!parsed.success) {
      throw new ApiError(
        400,
        'BAD_REQUEST',
        `invalid JSON body: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
      );
    }
    if (parsed.data.image === undefined) {
      throw new ApiError(400, 'MISSING_FIELD', 'missing field "image" (base64 or data URI of the image)');
    }
    return { category: parsed.data.category, images: [toImage(parsed.data.image, 'image', 'image')] };
  }
  const parsed = jsonBatch.safeParse(body);
  if (!parsed.success) {
    throw new ApiError(
      400,
      'BAD_REQUEST',
      `invalid JSON body: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
    );
  }
  const images = parsed.data.images;
  if (!images || images.length === 0) {
    throw new ApiError(
      400,
      'MISSING_FIELD',
      'missing field "images" (an array of base64 strings or {name, data})',
    );
  }
  if (images.length > limits.maxFiles) {
    throw new ApiError(
      413,
      'TOO_MANY_FILES',
      `${images.length} images sent; at most ${limits.maxFiles} per request`,
    );
  }
  return {
    category: parsed.data.category,
    images: images.map((v, i) => toImage(v, `images[${i}]`, `image-${i + 1}`)),
  };
}

async function fromMultipart(req: FastifyRequest, limits: RequestLimits): Promise<ImageRequest> {
  try {
    return await readParts(req, limits);
  } catch (err) {
    // Limit errors (FST_*) and ours keep their meaning; anything else is busboy refusing the body.
    const code = (err as { code?: unknown }).code;
    if (err instanceof ApiError || (typeof code === 'string' && code.startsWith('FST_'))) throw err;
    throw new ApiError(400, 'BAD_REQUEST', `malformed multipart/form-data body: ${(err as Error).message}`);
  }
}

async function readParts(req: FastifyRequest, limits: RequestLimits): Promise<ImageRequest> {
  let category: string | undefined;
  const images: UploadedImage[] = [];
  let total = 0;
  for await (const part of req.parts({
    limits: {
      fileSize: limits.maxBodyBytes,
      files: limits.maxFiles,
      fields: 16,
      parts: limits.maxFiles + 16,
    },
  })) {
    if (part.type === 'file') {
      const data = await part.toBuffer();
      total += data.length;
      if (total > limits.maxBodyBytes) {
        throw new ApiError(
          413,
          'BODY_TOO_LARGE',
          `request body is larger than the limit of ${limits.maxBodyBytes / 2 ** 20} MB`,
        );
      }
      if (data.length === 0) {
        throw new ApiError(400, 'MISSING_FIELD', `file field "${part.fieldname}" is empty (no file chosen?)`);
      }
      images.push({ name: part.filename || part.fieldname, data });
    } else if (part.fieldname === 'category') {
      category = typeof part.value === 'string' ? part.value : String(part.value);
    }
  }
  return { category, images };
}

export async function readImageRequest(
  req: FastifyRequest,
  batch: boolean,
  limits: RequestLimits,
): Promise<ImageRequest> {
  const type = req.headers['content-type'] ?? '';
  if (req.isMultipart()) {
    const r = await fromMultipart(req, limits);
    if (r.images.length === 0) {
      throw new ApiError(
        400,
        'MISSING_FIELD',
        `no image in the form: add a file field named "${batch ? 'images' : 'image'}"`,
      );
    }
    if (!batch && r.images.length > 1) {
      throw new ApiError(
        400,
        'BAD_REQUEST',
        `${r.images.length} images sent to /v1/predict; send one, or use /v1/predict/batch`,
      );
    }
    return r;
  }
  if (type.startsWith('application/json')) return fromJson(req.body, batch, limits);
  throw new ApiError(
    415,
    'UNSUPPORTED_MEDIA_TYPE',
    `unsupported Content-Type '${type || '(none)'}': send multipart/form-data or application/json`,
  );
}

/**
 * The API's error vocabulary: every failure answers `{ error: { code, message } }` with a 4xx status
 * when the client can fix it. Errors from fastify, @fastify/multipart and the image decoder are mapped
 * here, so no user input reaches the generic 500 path.
 */
import { ImageInputError } from './image-input';
import { QueueFullError } from './queue';

/** Every `error.code` the API answers with (the OpenAPI document lists them from here). */
export const API_ERROR_CODES = [
  'BAD_REQUEST',
  'BAD_JSON',
  'MISSING_FIELD',
  'NOT_AN_IMAGE',
  'CORRUPT_IMAGE',
  'IMAGE_TOO_LARGE',
  'BODY_TOO_LARGE',
  'TOO_MANY_FILES',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNKNOWN_CATEGORY',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'BUSY',
  'INTERNAL',
] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export interface ApiErrorBody {
  error: { code: ApiErrorCode; message: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ApiErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

const IMAGE_STATUS: Record<ImageInputError['code'], number> = {
  NOT_AN_IMAGE: 415,
  CORRUPT_IMAGE: 422,
  IMAGE_TOO_LARGE: 413,
};

/** Maps any thrown value to an ApiError; `maxBodyMb` phrases the size-limit message. */
export function toApiError(err: unknown, ctx: { maxBodyMb: number; maxFiles: number }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ImageInputError) return new ApiError(IMAGE_STATUS[err.code], err.code, err.message);
  if (err instanceof QueueFullError) return new ApiError(503, 'BUSY', err.message);
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return new ApiError(
        413,
        'BODY_TOO_LARGE',
        `request body is larger than the limit of ${ctx.maxBodyMb} MB`,
      );
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new ApiError(
        413,
        'TOO_MANY_FILES',
        `too many parts in the form: at most ${ctx.maxFiles} images per request`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        'unsupported Content-Type: send multipart/form-data (field "image" + "category") or application/json',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(400, 'BAD_JSON', 'the JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError(400, 'BAD_JSON', 'the request body is not valid JSON');
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', 'the request is not multipart/form-data');
    case 'FST_PROTO_VIOLATION':
      return new ApiError(400, 'BAD_REQUEST', 'a form field name is not allowed (prototype property)');
  }
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) return new ApiError(status, 'BAD_REQUEST', message);
  return new ApiError(500, 'INTERNAL', 'internal error (see the server log)');
}

/**
 * Errors of the artifact store. Each names the object (`s3://bucket/key` or a path) and says what to
 * check; `retryable` tells the Temporal edge whether trying again can help (a missing object or a
 * checksum mismatch will not fix itself; an unreachable endpoint may).
 */
export type StoreErrorCode =
  | 'NOT_FOUND'
  | 'CHECKSUM_MISMATCH'
  | 'ACCESS_DENIED'
  | 'BUCKET_MISSING'
  | 'UNREACHABLE'
  | 'INVALID_URL'
  | 'INVALID_KEY'
  | 'INVALID_MANIFEST'
  | 'ABORTED'
  | 'IO';

const RETRYABLE: ReadonlySet<StoreErrorCode> = new Set(['UNREACHABLE', 'IO']);

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  /** The object or location the error is about (`s3://bucket/key`, a local path, a store URL). */
  readonly location: string;
  readonly retryable: boolean;

  constructor(code: StoreErrorCode, location: string, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'StoreError';
    this.code = code;
    this.location = location;
    this.retryable = RETRYABLE.has(code);
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

export function checksumMismatch(
  location: string,
  expected: string,
  actual: string,
  what: string,
): StoreError {
  return new StoreError(
    'CHECKSUM_MISMATCH',
    location,
    `${location}: checksum mismatch: expected sha256 ${expected}, got ${actual} (${what}); the object was modified or truncated after it was written, or the expected hash is stale`,
  );
}

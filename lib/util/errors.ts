/**
 * Errors that are the user's to fix (bad config, corrupt image, unknown category...).
 * The Temporal edge maps these to non-retryable failures; anything else is treated as transient.
 */
export type UserErrorCode =
  | 'INVALID_CONFIG'
  | 'INVALID_PIPELINE'
  | 'INVALID_DATASET'
  | 'CORRUPT_IMAGE'
  | 'MISSING_MASK'
  | 'UNKNOWN_CATEGORY'
  | 'INVALID_MODEL'
  | 'INVALID_ARGUMENT'
  | 'CHECKPOINT_CORRUPT';

export class UserError extends Error {
  readonly code: UserErrorCode;
  readonly details: Record<string, unknown>;

  constructor(
    code: UserErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'UserError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Flattens an error and its `cause` chain into one readable line per level. */
export function describeError(err: unknown): string {
  const lines: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 8; depth++) {
    lines.push(cur instanceof Error ? `${cur.name}: ${cur.message}` : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return lines.join('\n  caused by ');
}

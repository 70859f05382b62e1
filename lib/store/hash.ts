import { createHash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { checksumMismatch, StoreError } from './errors';

/**
 * A pass-through that hashes what flows by. With `expected`, it fails the stream at its end when
 * the content hashes differently, so that a consumer (a temp-file writer, a multipart upload)
 * sees an error before it commits anything.
 */
export class HashingStream extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  digest: string | null = null;

  constructor(
    private readonly expected: string | undefined,
    private readonly location: string,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    if (this.expected && this.expected !== this.digest) {
      cb(checksumMismatch(this.location, this.expected, this.digest, this.what));
      return;
    }
    cb();
  }
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Fails `body` with an ABORTED StoreError when `signal` fires (the writer downstream then discards
 * its temp file / aborts its multipart upload); throws that error at once when `signal` has already
 * fired. Returns a function that detaches the listener.
 */
export function abortOnSignal(body: Readable, signal: AbortSignal | undefined, location: string): () => void {
  if (!signal) return () => {};
  const abort = () =>
    body.destroy(
      new StoreError('ABORTED', location, `${location}: upload aborted`, { cause: signal.reason }),
    );
  if (signal.aborted) {
    // Nothing has read the body yet, so nothing listens for its error: fail here instead of
    // destroying it with an error no one would catch.
    body.on('error', () => {});
    body.destroy();
    throw new StoreError('ABORTED', location, `${location}: upload aborted`, { cause: signal.reason });
  }
  signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

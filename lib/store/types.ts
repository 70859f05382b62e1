import type { Readable } from 'node:stream';

/** One stored object. `sha256` is known when the writer recorded it (this store always does on S3). */
export interface ObjectInfo {
  key: string;
  bytes: number;
  sha256?: string;
  lastModified?: Date;
}

export interface PutOptions {
  /**
   * Expected sha256 (hex) of the content. When given, content that hashes differently is refused
   * and nothing becomes visible.
   */
  sha256?: string;
  contentType?: string;
  /** Aborts the upload (e.g. on activity cancellation): it rejects with ABORTED and nothing becomes visible. */
  signal?: AbortSignal;
}

export interface PutResult {
  key: string;
  sha256: string;
  bytes: number;
}

export interface GetOptions {
  /**
   * Expected sha256 (hex). The download is verified against it (and against the hash stored with
   * the object, when there is one); a mismatch throws CHECKSUM_MISMATCH and leaves no file behind.
   */
  sha256?: string;
}

/**
 * Where artifacts live: a local folder or an S3-compatible bucket (see openStore). Keys are
 * '/'-separated paths relative to the store's root (its folder, or bucket + prefix).
 *
 * Writes are atomic from a reader's view: an object is visible only once complete (temp file +
 * rename locally; a single PUT or a completed multipart upload on S3). An interrupted put leaves
 * the previous object, if any, in place.
 */
export interface ArtifactStore {
  /** The URL the store was opened from (`s3://bucket/prefix` or an absolute folder path). */
  readonly url: string;
  /** Human-readable location of a key, for messages: `s3://bucket/prefix/key` or a path. */
  describe(key: string): string;

  putFile(key: string, path: string, opts?: PutOptions): Promise<PutResult>;
  putBytes(key: string, data: Uint8Array | string, opts?: PutOptions): Promise<PutResult>;
  /** Streams `body` in; if the stream errors midway, nothing becomes visible. */
  putStream(key: string, body: Readable, opts?: PutOptions): Promise<PutResult>;

  /** Downloads to `path` (atomically: temp file + rename), verified; returns the content's hash. */
  getFile(key: string, path: string, opts?: GetOptions): Promise<PutResult>;
  getBytes(key: string, opts?: GetOptions): Promise<Buffer>;

  /** Metadata of the object, or null when there is none. */
  head(key: string): Promise<ObjectInfo | null>;
  exists(key: string): Promise<boolean>;
  /** Every object whose key starts with `prefix` (a plain string prefix, as on S3), sorted by key. */
  list(prefix?: string): Promise<ObjectInfo[]>;
  /** Deletes the object; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

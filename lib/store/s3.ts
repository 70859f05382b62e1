/**
 * The S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph RGW, R2, ...). Objects are written with
 * one PUT, or a multipart upload for large bodies (lib-storage): both become visible only when
 * complete. The content's sha256 travels as user metadata (`x-amz-meta-sha256`) and every download
 * is verified against it and against the caller's expected hash.
 *
 * Configuration follows the AWS conventions: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (custom
 * endpoint), AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN or AWS_PROFILE (the SDK's default credential chain), plus AWS_S3_FORCE_PATH_STYLE
 * (default: on when a custom endpoint is set, as S3-compatible servers usually need).
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { sha256, sha256File } from '../util/atomic';
import { checksumMismatch, StoreError } from './errors';
import { abortOnSignal, HashingStream, SHA256_HEX } from './hash';
import { checkKey, joinKey } from './keys';
import { streamToFileAtomic } from './local';
import type { ArtifactStore, GetOptions, ObjectInfo, PutOptions, PutResult } from './types';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket (no leading or trailing slash needed). */
  prefix?: string;
  /** Custom endpoint (`http://127.0.0.1:8333`); default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. */
  endpoint?: string;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 (what S3-compatible servers accept). */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`). Default: AWS_S3_FORCE_PATH_STYLE, else on iff a custom endpoint is set. */
  forcePathStyle?: boolean;
  /** Explicit credentials; default: the SDK's chain (AWS_ACCESS_KEY_ID/..., AWS_PROFILE, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** SDK attempts per request (default 3). */
  maxAttempts?: number;
  /** Multipart part size in bytes (min 5 MiB; default 8 MiB). Bodies up to one part go in a single PUT. */
  partSize?: number;
  /** Parts uploaded in parallel (default 4). */
  queueSize?: number;
  /** Environment to read settings from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

const MIB = 1024 * 1024;

const truthy = (v: string | undefined): boolean | undefined =>
  v === undefined || v === '' ? undefined : /^(1|true|yes|on)$/i.test(v);

/** Resolves settings from options and the environment (exported for tests and diagnostics). */
export function resolveS3Settings(opts: S3StoreOptions) {
  const env = opts.env ?? process.env;
  const endpoint = opts.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
  const region = opts.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1');
  const forcePathStyle = opts.forcePathStyle ?? truthy(env.AWS_S3_FORCE_PATH_STYLE) ?? endpoint !== undefined;
  return { endpoint, region, forcePathStyle };
}

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
}

export class S3Store implements ArtifactStore {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  readonly endpoint: string | undefined;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(opts: S3StoreOptions) {
    const { endpoint, region, forcePathStyle } = resolveS3Settings(opts);
    this.bucket = opts.bucket;
    this.prefix = joinKey(opts.prefix ?? '');
    this.endpoint = endpoint;
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.partSize = Math.max(5 * MIB, opts.partSize ?? 8 * MIB);
    this.queueSize = Math.max(1, opts.queueSize ?? 4);
    this.client = new S3Client({
      region,
      endpoint,
      forcePathStyle,
      credentials: opts.credentials,
      maxAttempts: opts.maxAttempts,
      // S3-compatible servers may reject the SDK's default CRC32 checksums; sha256 is ours to check.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  describe(key: string): string {
    return `s3://${this.bucket}/${joinKey(this.prefix, key)}`;
  }

  private objectKey(key: string): string {
    return joinKey(this.prefix, checkKey(key, this.url));
  }

  private where(): string {
    return this.endpoint
      ? `endpoint ${this.endpoint}`
      : 'AWS S3 (no AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL set)';
  }

  /** Turns an SDK or network error into a StoreError that says what to check. */
  private fail(err: unknown, key: string | null, doing: string): never {
    if (err instanceof StoreError) throw err;
    const e = (err ?? {}) as AwsLikeError;
    const name = e.name ?? e.code ?? '';
    const status = e.$metadata?.httpStatusCode;
    const loc = key === null ? this.url : this.describe(key);
    const msg = `${loc}: ${doing} failed`;
    const cause = { cause: err };
    if (name === 'NoSuchBucket')
      throw new StoreError(
        'BUCKET_MISSING',
        loc,
        `${msg}: bucket '${this.bucket}' does not exist at ${this.where()}: create it, or check the bucket name in the URL and the endpoint`,
        cause,
      );
    if (name === 'NoSuchKey' || name === 'NotFound' || status === 404)
      throw new StoreError('NOT_FOUND', loc, `${msg}: no such object in bucket '${this.bucket}'`, cause);
    if (
      [
        'AccessDenied',
        'InvalidAccessKeyId',
        'SignatureDoesNotMatch',
        'CredentialsProviderError',
        'ExpiredToken',
        'InvalidToken',
        'Forbidden',
      ].includes(name) ||
      status === 403 ||
      status === 401
    )
      throw new StoreError(
        'ACCESS_DENIED',
        loc,
        `${msg}: access denied (${name || status}) by ${this.where()}: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), that they are valid for this endpoint, and that they may access bucket '${this.bucket}'`,
        cause,
      );
    const netCodes = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH'];
    const errno = (err as NodeJS.ErrnoException)?.code ?? '';
    const inner = (err as { cause?: NodeJS.ErrnoException })?.cause?.code ?? '';
    const aggregate = (err as { errors?: NodeJS.ErrnoException[] })?.errors?.map((x) => x.code ?? '') ?? [];
    if (
      netCodes.some(
        (c) => c === errno || c === inner || aggregate.includes(c) || (e.message ?? '').includes(c),
      ) ||
      name === 'TimeoutError' ||
      name === 'RequestTimeout'
    )
      throw new StoreError(
        'UNREACHABLE',
        loc,
        `${msg}: cannot reach ${this.where()} (${errno || inner || aggregate[0] || name}): check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, that the server runs, and the network between`,
        cause,
      );
    throw new StoreError(
      'IO',
      loc,
      `${msg}: ${name ? `${name}: ` : ''}${e.message ?? String(err)}${status ? ` (HTTP ${status})` : ''}`,
      cause,
    );
  }

  async putStream(key: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    const Key = this.objectKey(key);
    if (opts.sha256 !== undefined && !SHA256_HEX.test(opts.sha256))
      throw new StoreError('INVALID_KEY', this.describe(key), `sha256 '${opts.sha256}' is not 64 hex digits`);
    // Hash in passing; with an expected hash the stream fails at its end on a mismatch, so the
    // upload is aborted before it completes (nothing visible).
    const hasher = new HashingStream(opts.sha256, this.describe(key), 'content being stored');
    body.once('error', (err) => hasher.destroy(err));
    const detach = abortOnSignal(body, opts.signal, this.describe(key));
    body.pipe(hasher);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key,
        Body: hasher,
        ContentType: opts.contentType ?? 'application/octet-stream',
        Metadata: opts.sha256 ? { sha256: opts.sha256 } : undefined,
      },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      body.destroy();
      this.fail(err, key, 'upload');
    } finally {
      detach();
    }
    return { key, sha256: hasher.digest!, bytes: hasher.bytes };
  }

  async putFile(key: string, path: string, opts: PutOptions = {}): Promise<PutResult> {
    // Hash first so the hash can travel as metadata; the upload re-checks it while streaming.
    let actual: string;
    try {
      actual = await sha256File(path);
    } catch (err) {
      throw new StoreError('IO', path, `${path}: cannot read the file to upload to ${this.describe(key)}`, {
        cause: err,
      });
    }
    if (opts.sha256 && opts.sha256 !== actual)
      throw checksumMismatch(this.describe(key), opts.sha256, actual, `file ${path} being stored`);
    return this.putStream(key, createReadStream(path), { ...opts, sha256: actual });
  }

  async putBytes(key: string, data: Uint8Array | string, opts: PutOptions = {}): Promise<PutResult> {
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    const actual = sha256(buf);
    if (opts.sha256 && opts.sha256 !== actual)
      throw checksumMismatch(this.describe(key), opts.sha256, actual, 'content being stored');
    return this.putStream(key, Readable.from([buf]), { ...opts, sha256: actual });
  }

  private async open(key: string): Promise<{ body: Readable; stored?: string }> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      return { body: res.Body as Readable, stored: res.Metadata?.sha256 };
    } catch (err) {
      this.fail(err, key, 'download');
    }
  }

  async getFile(key: string, path: string, opts: GetOptions = {}): Promise<PutResult> {
    const { body, stored } = await this.open(key);
    const expected = opts.sha256 ?? stored;
    const what = opts.sha256
      ? 'downloaded object vs the expected hash'
      : 'downloaded object vs its stored sha256';
    try {
      const r = await streamToFileAtomic(body, path, expected, this.describe(key), what);
      return { ...r, key };
    } catch (err) {
      this.fail(err, key, 'download');
    }
  }

  async getBytes(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const { body, stored } = await this.open(key);
    const chunks: Buffer[] = [];
    try {
      for await (const c of body) chunks.push(c as Buffer);
    } catch (err) {
      this.fail(err, key, 'download');
    }
    const buf = Buffer.concat(chunks);
    const expected = opts.sha256 ?? stored;
    if (expected) {
      const actual = sha256(buf);
      if (actual !== expected)
        throw checksumMismatch(
          this.describe(key),
          expected,
          actual,
          opts.sha256 ? 'downloaded object vs the expected hash' : 'downloaded object vs its stored sha256',
        );
    }
    return buf;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const res = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      return {
        key,
        bytes: res.ContentLength ?? 0,
        sha256: res.Metadata?.sha256,
        lastModified: res.LastModified,
      };
    } catch (err) {
      const e = err as AwsLikeError;
      // HEAD has no body: a missing bucket and a missing key both answer 404 NotFound.
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return null;
      this.fail(err, key, 'head');
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  async list(prefix = ''): Promise<ObjectInfo[]> {
    const full = this.prefix ? (prefix ? `${this.prefix}/${prefix}` : `${this.prefix}/`) : prefix;
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      let res: ListObjectsV2CommandOutput;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: full || undefined,
            ContinuationToken: token,
          }),
        );
      } catch (err) {
        this.fail(err, null, `listing '${prefix}'`);
      }
      for (const o of res.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue;
        out.push({ key: o.Key.slice(strip), bytes: o.Size ?? 0, lastModified: o.LastModified });
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      this.fail(err, key, 'delete');
    }
  }

  /** Creates the bucket of this store's URL; one that exists already (and is ours) is fine. */
  async createBucket(): Promise<{ created: boolean }> {
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
      return { created: true };
    } catch (err) {
      const name = (err as AwsLikeError).name ?? '';
      if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return { created: false };
      this.fail(err, null, `creating bucket '${this.bucket}'`);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreError } from './errors';
import { LocalStore } from './local';
import { S3Store, type S3StoreOptions } from './s3';
import type { ArtifactStore } from './types';

export type OpenStoreOptions = Omit<S3StoreOptions, 'bucket' | 'prefix'>;

/** True for `s3://...` URLs (the store lives in a bucket), false for local paths. */
export function isRemoteStoreUrl(url: string): boolean {
  return /^s3:\/\//i.test(url);
}

/** Splits `s3://bucket/some/prefix` into bucket and prefix (validating the bucket name). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]+)\/?([^?#]*)$/i.exec(url);
  if (!m)
    throw new StoreError(
      'INVALID_URL',
      url,
      `'${url}' is not an S3 URL (expected s3://bucket or s3://bucket/prefix)`,
    );
  const [, bucket, prefix] = m;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new StoreError(
      'INVALID_URL',
      url,
      `'${url}': '${bucket}' is not a valid bucket name (3-63 characters: lower-case letters, digits, '.', '-')`,
    );
  return { bucket, prefix: prefix.replace(/\/+$/, '') };
}

/**
 * Opens the store a URL names: `s3://bucket[/prefix]` (S3-compatible; endpoint, region and
 * credentials from the AWS environment variables or `opts`), `file:///abs/path`, or a local path.
 */
export function openStore(url: string, opts: OpenStoreOptions = {}): ArtifactStore {
  if (isRemoteStoreUrl(url)) return new S3Store({ ...opts, ...parseS3Url(url) });
  if (/^file:\/\//i.test(url)) return new LocalStore(fileURLToPath(url));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url))
    throw new StoreError(
      'INVALID_URL',
      url,
      `'${url}': unsupported store URL scheme (use s3://bucket/prefix, or a local folder path)`,
    );
  if (url.trim() === '') throw new StoreError('INVALID_URL', url, 'empty store URL');
  return new LocalStore(isAbsolute(url) ? url : resolve(url));
}

/** The artifact store: a local folder or an S3-compatible bucket, plus a local verified read cache. */
export { type CacheOptions, type CacheStats, VerifiedCache } from './cache';
export { isStoreError, StoreError, type StoreErrorCode } from './errors';
export { checkKey, joinKey } from './keys';
export { LocalStore } from './local';
export { isRemoteStoreUrl, type OpenStoreOptions, openStore, parseS3Url } from './open';
export {
  type FetchOptions,
  fetchDir,
  type PublishOptions,
  publishDir,
  readManifest,
  STORE_MANIFEST,
  type StoreManifest,
} from './publish';
export { resolveS3Settings, S3Store, type S3StoreOptions } from './s3';
export type { ArtifactStore, GetOptions, ObjectInfo, PutOptions, PutResult } from './types';

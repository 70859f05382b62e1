/**
 * Publishing a folder to the store with "manifest written last": every file is uploaded first,
 * then `_manifest.json` (path, sha256 and size of each). A reader that finds the manifest finds a
 * complete folder; one that fetches verifies every file against it.
 *
 * Re-publishing to the same prefix overwrites files before the new manifest lands: a reader that
 * read the old manifest meanwhile gets a CHECKSUM_MISMATCH (detected, never silent). Publish to a
 * fresh prefix (a run id, a content hash) when readers may be active.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { sha256File } from '../util/atomic';
import type { VerifiedCache } from './cache';
import { StoreError } from './errors';
import { SHA256_HEX } from './hash';
import { checkKey, joinKey, TEMP_PREFIX } from './keys';
import type { ArtifactStore } from './types';

export const STORE_MANIFEST = '_manifest.json';
export const STORE_MANIFEST_FORMAT = 'anomaly-spotter-store-manifest';

const manifestSchema = z.object({
  format: z.literal(STORE_MANIFEST_FORMAT),
  version: z.literal(1),
  createdAt: z.string(),
  files: z.array(
    z.object({
      path: z.string().min(1),
      sha256: z.string().regex(SHA256_HEX),
      bytes: z.number().int().nonnegative(),
    }),
  ),
});
export type StoreManifest = z.infer<typeof manifestSchema>;

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(relative(root, p).split(sep).join('/'));
    }
  };
  await walk(root);
  return out.sort();
}

/**
 * Runs `fn` over `items` with at most `limit` at a time. After a failure no new item starts, and
 * the first error is thrown only once the running ones have settled (so that the caller's cleanup
 * does not race with writes still in flight).
 */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (!failure && next < items.length) {
      try {
        await fn(items[next++]);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw (failure as { err: unknown }).err;
}

export interface PublishOptions {
  concurrency?: number;
  /**
   * Files (path relative to the folder -> sha256) already in the store at those keys, e.g. from an
   * earlier publish of a subfolder: a local file with the same hash is listed, not uploaded again.
   */
  stored?: ReadonlyMap<string, string>;
}

/** Uploads every file of `localDir` under `prefix`, then the manifest, last. Returns the manifest. */
export async function publishDir(
  store: ArtifactStore,
  localDir: string,
  prefix: string,
  opts: PublishOptions = {},
): Promise<StoreManifest> {
  const root = resolve(localDir);
  const files = await listFiles(root).catch((err: unknown) => {
    throw new StoreError(
      'IO',
      root,
      `${root}: cannot read the folder to publish: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  });
  const skip = files.filter(
    (f) => f === STORE_MANIFEST || f.split('/').some((s) => s.startsWith(TEMP_PREFIX)),
  );
  const entries: StoreManifest['files'] = [];
  await eachLimit(
    files.filter((f) => !skip.includes(f)),
    opts.concurrency ?? 4,
    async (path) => {
      const local = join(root, ...path.split('/'));
      const known = opts.stored?.get(path);
      if (known !== undefined && (await sha256File(local)) === known) {
        entries.push({ path, sha256: known, bytes: (await stat(local)).size });
        return;
      }
      const r = await store.putFile(joinKey(prefix, path), local);
      entries.push({ path, sha256: r.sha256, bytes: r.bytes });
    },
  );
  const manifest: StoreManifest = {
    format: STORE_MANIFEST_FORMAT,
    version: 1,
    createdAt: new Date().toISOString(),
    files: entries.sort((a, b) => (a.path < b.path ? -1 : 1)),
  };
  await store.putBytes(joinKey(prefix, STORE_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, {
    contentType: 'application/json',
  });
  return manifest;
}

/** Reads and validates the manifest under `prefix`; NOT_FOUND says the folder is unpublished (or unfinished). */
export async function readManifest(store: ArtifactStore, prefix: string): Promise<StoreManifest> {
  const key = joinKey(prefix, STORE_MANIFEST);
  let raw: Buffer;
  try {
    raw = await store.getBytes(key);
  } catch (err) {
    if (err instanceof StoreError && err.code === 'NOT_FOUND')
      throw new StoreError(
        'NOT_FOUND',
        store.describe(key),
        `${store.describe(key)}: no manifest: nothing was published under this prefix, or its publish has not finished (the manifest is written last)`,
        { cause: err },
      );
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new StoreError('INVALID_MANIFEST', store.describe(key), `${store.describe(key)}: not JSON`, {
      cause: err,
    });
  }
  const res = manifestSchema.safeParse(parsed);
  if (!res.success)
    throw new StoreError(
      'INVALID_MANIFEST',
      store.describe(key),
      `${store.describe(key)}: not a store manifest: ${res.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  for (const f of res.data.files) checkKey(f.path, store.describe(key));
  return res.data;
}

export interface FetchOptions {
  concurrency?: number;
  /** Serve files from (and fill) this verified cache, keyed by the manifest's sha256. */
  cache?: VerifiedCache;
}

/**
 * Downloads a published folder into `localDir`, verifying every file against the manifest. The
 * files land in a sibling staging folder first, which then replaces `localDir` by two renames: a
 * reader sees the old folder, the complete new one, or (for an instant) none, never a partial one;
 * a failed fetch leaves the old folder as it was.
 */
export async function fetchDir(
  store: ArtifactStore,
  prefix: string,
  localDir: string,
  opts: FetchOptions = {},
): Promise<StoreManifest> {
  const manifest = await readManifest(store, prefix);
  const dest = resolve(localDir);
  const staging = join(dirname(dest), `${TEMP_PREFIX}fetch-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  try {
    await eachLimit(manifest.files, opts.concurrency ?? 4, async (f) => {
      const key = joinKey(prefix, f.path);
      const target = join(staging, ...f.path.split('/'));
      await mkdir(dirname(target), { recursive: true });
      if (opts.cache) {
        await opts.cache.fetchTo(f.sha256, target, async (tmp) => {
          await store.getFile(key, tmp, { sha256: f.sha256 });
        });
      } else {
        await store.getFile(key, target, { sha256: f.sha256 });
      }
    });
    if (await stat(dest).catch(() => null)) {
      const old = join(dirname(dest), `${TEMP_PREFIX}old-${randomBytes(4).toString('hex')}`);
      await rename(dest, old);
      await rename(staging, dest);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(staging, dest);
    }
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return manifest;
}

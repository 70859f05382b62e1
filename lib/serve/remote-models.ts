/**
 * `--models s3://bucket/prefix`: model packages from an artifact store, fetched through the local
 * verified cache into a local mirror folder that the ordinary loader (loadServedModels /
 * loadModelPackage) then reads and verifies again.
 *
 * The prefix is either one package (`<prefix>/manifest.json`) or a runs tree holding packages at
 * `.../<category>/<step>/package/manifest.json`. For a runs tree only the newest calibrated package
 * per category is downloaded (chosen from each package's small manifest.json + metadata.json), so
 * serving a bucket full of old runs costs only their metadata; a category with a champion pointer
 * (`.champions/<pipeline>/<category>.json`, the promote step) gets its champion instead, and the
 * pointers are mirrored too. Every file is fetched by the sha256
 * its package manifest lists, so unchanged files come from the cache on the next start.
 * Not mirrored: the run's report folders (the /reports pages of a remote run are empty).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { CHAMPIONS_DIR } from '../package/champion';
import { PACKAGE_FILES } from '../package/package';
import { defaultCacheDir, VerifiedCache } from '../store/cache';

import { StoreError } from '../store/errors';
import { checkKey, joinKey } from '../store/keys';
import { isRemoteStoreUrl, type OpenStoreOptions, openStore } from '../store/open';
import type { ArtifactStore } from '../store/types';
import { UserError } from '../util/errors';

export const CACHE_MAX_BYTES_ENV = 'ANOMALY_SPOTTER_CACHE_MAX_BYTES';
const DEFAULT_CACHE_MAX_BYTES = 5 * 1024 ** 3;

export interface RemoteModelsOptions {
  /** Cache + mirror folder (default $ANOMALY_SPOTTER_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, /anomaly-spotter). */
  cacheDir?: string;
  /** Cache bound in bytes (default $ANOMALY_SPOTTER_CACHE_MAX_BYTES, else 5 GiB). */
  cacheMaxBytes?: number;
  /** Store settings (endpoint, credentials...) beyond the AWS environment variables. */
  store?: OpenStoreOptions;
  env?: NodeJS.ProcessEnv;
}

export interface RemoteModelsResult {
  /** Local folder to load from: the mirrored package, or the mirrored runs tree. */
  localPath: string;
  /** Store keys (relative to the URL) of the mirrored packages. */
  packages: string[];
  /** Packages not mirrored, and why (older than another of the category, uncalibrated, unreadable). */
  skipped: { key: string; reason: string }[];
  cache: VerifiedCache;
}

// Loose on purpose: the full schemas are the loader's (lib/model/package) to check after the mirror.
const looseManifest = z.looseObject({
  files: z.record(z.string(), z.looseObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
const looseMetadata = z.looseObject({ category: z.string().min(1), createdAt: z.string() });
// A pointer's package folder is relative to the runs root (lib/package/champion).
const loosePointer = z.looseObject({
  category: z.string().min(1),
  packageDir: z.string().regex(/^[^/]/, 'a folder relative to the runs root'),
});

async function readJson<S extends z.ZodType>(
  store: ArtifactStore,
  key: string,
  schema: S,
  sha256?: string,
): Promise<z.infer<S>> {
  const raw = await store.getBytes(key, { sha256 });
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new Error(`${store.describe(key)}: not JSON`);
  }
  const res = schema.safeParse(parsed);
  if (!res.success)
    throw new Error(`${store.describe(key)}: ${z.prettifyError(res.error).replace(/\n/g, '; ')}`);
  return res.data;
}

/** Downloads one package (files by the manifest's sha256, via the cache; manifest.json last) into `dest`. */
async function mirrorPackage(
  store: ArtifactStore,
  prefix: string,
  dest: string,
  cache: VerifiedCache,
): Promise<void> {
  const manifestKey = joinKey(prefix, PACKAGE_FILES.manifest);
  const manifest = await readJson(store, manifestKey, looseManifest);
  for (const [name, entry] of Object.entries(manifest.files)) {
    checkKey(name, store.describe(manifestKey));
    const key = joinKey(prefix, name);
    const target = join(dest, ...name.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await cache.fetchTo(entry.sha256, target, (tmp) =>
      store.getFile(key, tmp, { sha256: entry.sha256 }).then(() => undefined),
    );
  }
  await store.getFile(manifestKey, join(dest, PACKAGE_FILES.manifest));
}

/**
 * Mirrors the packages under a store URL into the cache folder; returns where to load them from.
 * The mirror for a URL is rebuilt in a staging folder and swapped in whole.
 */
export async function mirrorRemoteModels(
  url: string,
  opts: RemoteModelsOptions = {},
): Promise<RemoteModelsResult> {
  const env = opts.env ?? process.env;
  const cacheDir = opts.cacheDir ?? defaultCacheDir(env);
  const maxBytes = opts.cacheMaxBytes ?? (Number(env[CACHE_MAX_BYTES_ENV]) || DEFAULT_CACHE_MAX_BYTES);
  const cache = await VerifiedCache.open(join(cacheDir, 'objects'), { maxBytes });
  const store = openStore(url, opts.store);
  const urlId = createHash('sha256').update(store.url).digest('hex').slice(0, 16);
  const mirror = join(cacheDir, 'mirror', urlId);
  const staging = `${mirror}.staging-${process.pid}-${randomBytes(4).toString('hex')}`;
  const skipped: RemoteModelsResult['skipped'] = [];
  const pointers: string[] = [];
  try {
    let chosen: string[];
    let single = false;
    if (await store.exists(PACKAGE_FILES.manifest)) {
      chosen = [''];
      single = true;
    } else {
      const suffix = `/package/${PACKAGE_FILES.manifest}`;
      const keys = (await store.list()).map((o) => o.key);
      const prefixes = keys
        .filter((k) => k.endsWith(suffix) || k === `package/${PACKAGE_FILES.manifest}`)
        .map((k) => k.slice(0, -PACKAGE_FILES.manifest.length - 1));
      if (prefixes.length === 0)
        throw new UserError(
          'INVALID_ARGUMENT',
          `--models ${url}: no model packages found in the store (expected ${store.describe('manifest.json')} for one package, or <run>/<category>/<step>/package/manifest.json below it)`,
        );
      const newest = new Map<string, { prefix: string; createdAt: string }>();
      for (const prefix of prefixes) {
        try {
          const manifest = await readJson(store, joinKey(prefix, PACKAGE_FILES.manifest), looseManifest);
          if (!manifest.files[PACKAGE_FILES.calibration]) {
            skipped.push({
              key: prefix,
              reason: 'uncalibrated (a checkpoint step package; the package step seals the servable copy)',
            });
            continue;
          }
          const metaEntry = manifest.files[PACKAGE_FILES.metadata];
          if (!metaEntry) throw new Error(`${PACKAGE_FILES.metadata} not listed in its manifest`);
          const meta = await readJson(
            store,
            joinKey(prefix, PACKAGE_FILES.metadata),
            looseMetadata,
            metaEntry.sha256,
          );
          const cur = newest.get(meta.category);
          if (!cur || meta.createdAt > cur.createdAt) {
            if (cur) skipped.push({ key: cur.prefix, reason: `older than ${prefix}` });
            newest.set(meta.category, { prefix, createdAt: meta.createdAt });
          } else skipped.push({ key: prefix, reason: `older than ${cur.prefix}` });
        } catch (err) {
          if (err instanceof StoreError && err.code !== 'CHECKSUM_MISMATCH' && err.code !== 'NOT_FOUND')
            throw err;
          skipped.push({ key: prefix, reason: (err as Error).message });
        }
      }
      // A category with a champion pointer (the promote step) is served its champion, as locally.
      for (const key of keys.filter((k) => k.startsWith(`${CHAMPIONS_DIR}/`) && k.endsWith('.json'))) {
        try {
          const p = await readJson(store, key, loosePointer);
          if (!prefixes.includes(p.packageDir)) {
            skipped.push({
              key,
              reason: `champion pointer ignored: names ${p.packageDir}, not a package in the store`,
            });
            continue;
          }
          const cur = newest.get(p.category);
          if (cur && cur.prefix !== p.packageDir)
            skipped.push({ key: cur.prefix, reason: `not the champion (${key} names ${p.packageDir})` });
          newest.set(p.category, { prefix: p.packageDir, createdAt: '' });
          pointers.push(key);
        } catch (err) {
          skipped.push({ key, reason: `champion pointer ignored: ${(err as Error).message}` });
        }
      }
      chosen = [...newest.values()].map((v) => v.prefix).sort();
      if (chosen.length === 0)
        throw new UserError(
          'INVALID_MODEL',
          `--models ${url}: found ${prefixes.length} package(s) but none is servable:\n${skipped.map((s) => `  ${s.key}: ${s.reason}`).join('\n')}`,
        );
    }
    await mkdir(staging, { recursive: true });
    for (const prefix of chosen) {
      await mirrorPackage(store, prefix, prefix ? join(staging, ...prefix.split('/')) : staging, cache);
    }
    // The pointers come along, so the local loader (and its champion polling) sees what the bucket says.
    for (const key of pointers) await store.getFile(key, join(staging, ...key.split('/')));
    if (await stat(mirror).catch(() => null)) {
      const old = `${mirror}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
      await rename(mirror, old);
      await rename(staging, mirror);
      await rm(old, { recursive: true, force: true });
    } else {
      await mkdir(dirname(mirror), { recursive: true });
      await rename(staging, mirror);
    }
    return { localPath: mirror, packages: single ? [''] : chosen, skipped, cache };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  } finally {
    await store.close();
  }
}

/** A local path as is; an `s3://` URL mirrored (see mirrorRemoteModels) and its local folder returned. */
export async function resolveModelsSource(source: string, opts: RemoteModelsOptions = {}): Promise<string> {
  if (!isRemoteStoreUrl(source)) return source;
  return (await mirrorRemoteModels(source, opts)).localPath;
}

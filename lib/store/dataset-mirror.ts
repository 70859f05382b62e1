/**
 * A dataset in object storage (`--data-root s3://bucket/prefix`, the MVTec AD layout below the
 * prefix): the client lists its categories, and the preprocess step of each category brings that
 * category's objects into a local mirror (`<work dir>/datasets/<bucket>/<prefix>/<category>`) the
 * way `aws s3 sync` does: an object is downloaded when the local copy is missing or differs in size
 * or modification time, local files the bucket no longer has are removed, and every download is
 * verified against the sha256 stored with the object when its writer recorded one.
 */
import { mkdir, readdir, rm, stat, utimes } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { CATEGORY_NAME_RE } from '../config/load';
import { TEMP_PREFIX } from './keys';
import { openStore, parseS3Url } from './open';
import { STORE_MANIFEST } from './publish';
import { defaultWorkDir } from './run-mirror';
import type { ObjectInfo } from './types';

/** Categories of a dataset in a store: top-level names with at least one object under `train/good/`. */
export async function listRemoteCategories(url: string): Promise<string[]> {
  const store = openStore(url);
  try {
    const names = new Set<string>();
    for (const o of await store.list()) {
      const [cat, a, b, ...rest] = o.key.split('/');
      if (a === 'train' && b === 'good' && rest.length > 0 && CATEGORY_NAME_RE.test(cat)) names.add(cat);
    }
    return [...names].sort();
  } finally {
    await store.close();
  }
}

export interface DatasetSync {
  /** Local dataset root holding `<category>/...` as the store has it. */
  root: string;
  files: number;
  downloaded: number;
  removed: number;
}

async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function localFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(p);
    }
  };
  await walk(dir);
  return out;
}

/** Brings one category of a dataset in a store into this host's mirror; returns the mirror's root. */
export async function syncDatasetCategory(
  url: string,
  category: string,
  opts: { workDir?: string; onMirror?: (categoryDir: string) => Promise<void> } = {},
): Promise<DatasetSync> {
  const { bucket, prefix } = parseS3Url(url);
  const root = join(
    opts.workDir ?? defaultWorkDir(),
    'datasets',
    bucket,
    ...prefix.split('/').filter(Boolean),
  );
  // Before any download: the caller marks the folder as in use (lib/store/work-dir).
  await mkdir(join(root, category), { recursive: true });
  await opts.onMirror?.(join(root, category));
  const store = openStore(url);
  try {
    const objects = (await store.list(`${category}/`)).filter((o) => {
      const name = o.key.split('/').at(-1) ?? '';
      return name !== STORE_MANIFEST && !name.startsWith(TEMP_PREFIX) && !o.key.endsWith('/');
    });
    let downloaded = 0;
    await eachLimit(objects, 8, async (o: ObjectInfo) => {
      const local = join(root, ...o.key.split('/'));
      const st = await stat(local).catch(() => null);
      const mtime = o.lastModified?.getTime();
      if (st && st.size === o.bytes && mtime !== undefined && Math.abs(st.mtimeMs - mtime) < 1) return;
      await store.getFile(o.key, local);
      if (o.lastModified) await utimes(local, o.lastModified, o.lastModified);
      downloaded++;
    });
    const wanted = new Set(objects.map((o) => o.key));
    let removed = 0;
    for (const file of await localFiles(join(root, category))) {
      const rel = relative(root, file).split(sep).join('/');
      // The mirror's own markers (lib/store/work-dir) are not dataset files.
      if (rel.split('/').some((seg) => seg.startsWith('.'))) continue;
      if (!wanted.has(rel)) {
        await rm(file, { force: true });
        removed++;
      }
    }
    return { root, files: objects.length, downloaded, removed };
  } finally {
    await store.close();
  }
}

/**
 * The local-folder store: each key is a file under the root. Writes go to a temp file in the
 * target's folder, are fsynced and renamed into place, so readers never see a partial object.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256, sha256File } from '../util/atomic';
import { checksumMismatch, StoreError } from './errors';
import { abortOnSignal, HashingStream } from './hash';
import { checkKey, TEMP_PREFIX } from './keys';
import type { ArtifactStore, GetOptions, ObjectInfo, PutOptions, PutResult } from './types';

const tempName = (path: string) =>
  join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);

async function fsyncPath(path: string): Promise<void> {
  try {
    const fh = await open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort (directories cannot be fsynced everywhere) */
  }
}

/**
 * Streams `body` into `dest` atomically: temp file in dest's folder, hash checked against `expected`
 * before the rename. On any error the temp file is removed and dest is untouched.
 */
export async function streamToFileAtomic(
  body: Readable,
  dest: string,
  expected: string | undefined,
  location: string,
  what: string,
): Promise<PutResult & { key: '' }> {
  await mkdir(dirname(dest), { recursive: true });
  const tmp = tempName(dest);
  const hasher = new HashingStream(expected, location, what);
  try {
    await pipeline(body, hasher, createWriteStream(tmp, { flags: 'wx' }));
    await fsyncPath(tmp);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncPath(dirname(dest));
  return { key: '', sha256: hasher.digest!, bytes: hasher.bytes };
}

export class LocalStore implements ArtifactStore {
  readonly url: string;
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.url = this.root;
  }

  describe(key: string): string {
    return join(this.root, key);
  }

  private path(key: string): string {
    return join(this.root, ...checkKey(key, this.root).split('/'));
  }

  private wrap(err: unknown, key: string, doing: string): never {
    if (err instanceof StoreError) throw err;
    const e = err as NodeJS.ErrnoException;
    const where = this.describe(key);
    if (e.code === 'ENOENT')
      throw new StoreError('NOT_FOUND', where, `${where}: no such object in ${this.root}`);
    if (e.code === 'EACCES' || e.code === 'EPERM')
      throw new StoreError(
        'ACCESS_DENIED',
        where,
        `${where}: permission denied while ${doing}: check the folder's owner and mode`,
        { cause: err },
      );
    throw new StoreError('IO', where, `${where}: ${doing} failed: ${e.message}`, { cause: err });
  }

  async putStream(key: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    const dest = this.path(key);
    const detach = abortOnSignal(body, opts.signal, this.describe(key));
    try {
      const r = await streamToFileAtomic(body, dest, opts.sha256, this.describe(key), 'content being stored');
      return { ...r, key };
    } catch (err) {
      this.wrap(err, key, 'writing');
    } finally {
      detach();
    }
  }

  async putFile(key: string, path: string, opts: PutOptions = {}): Promise<PutResult> {
    // A missing or unreadable source is the caller's file, not a missing object: name it.
    const st = await stat(path).catch((err: unknown) => {
      throw new StoreError('IO', path, `${path}: cannot read the file to store as ${this.describe(key)}`, {
        cause: err,
      });
    });
    if (!st.isFile())
      throw new StoreError('IO', path, `${path}: not a file (cannot store it as ${this.describe(key)})`);
    return this.putStream(key, createReadStream(path), opts);
  }

  async putBytes(key: string, data: Uint8Array | string, opts: PutOptions = {}): Promise<PutResult> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (opts.sha256) {
      const actual = sha256(buf);
      if (actual !== opts.sha256)
        throw checksumMismatch(this.describe(key), opts.sha256, actual, 'content being stored');
    }
    return this.putStream(key, Readable.from([buf]), opts);
  }

  async getFile(key: string, path: string, opts: GetOptions = {}): Promise<PutResult> {
    const src = this.path(key);
    let body: Readable;
    try {
      await stat(src);
      body = createReadStream(src);
    } catch (err) {
      this.wrap(err, key, 'reading');
    }
    try {
      const r = await streamToFileAtomic(
        body,
        resolve(path),
        opts.sha256,
        this.describe(key),
        'stored object',
      );
      return { ...r, key };
    } catch (err) {
      this.wrap(err, key, 'reading');
    }
  }

  async getBytes(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const src = this.path(key);
    let buf: Buffer;
    try {
      const fh = await open(src, 'r');
      try {
        buf = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (err) {
      this.wrap(err, key, 'reading');
    }
    if (opts.sha256) {
      const actual = sha256(buf);
      if (actual !== opts.sha256)
        throw checksumMismatch(this.describe(key), opts.sha256, actual, 'stored object');
    }
    return buf;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const st = await stat(this.path(key)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      this.wrap(err, key, 'reading metadata');
    });
    if (!st?.isFile()) return null;
    return { key, bytes: st.size, lastModified: st.mtime };
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  /** sha256 of a stored object (the local store keeps no hash beside the file: it reads it). */
  async sha256Of(key: string): Promise<string> {
    try {
      return await sha256File(this.path(key));
    } catch (err) {
      this.wrap(err, key, 'reading');
    }
  }

  async list(prefix = ''): Promise<ObjectInfo[]> {
    // Walk only the folder the prefix points into; compare full keys against the prefix.
    const slash = prefix.lastIndexOf('/');
    const baseKey = slash >= 0 ? prefix.slice(0, slash) : '';
    const start = baseKey ? join(this.root, ...baseKey.split('/')) : this.root;
    const out: ObjectInfo[] = [];
    const walk = async (dir: string, keyPrefix: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw new StoreError('IO', dir, `${dir}: listing failed: ${(err as Error).message}`, { cause: err });
      }
      for (const e of entries) {
        if (e.name.startsWith(TEMP_PREFIX)) continue;
        const key = keyPrefix ? `${keyPrefix}/${e.name}` : e.name;
        // prune subtrees that cannot match the prefix
        if (!(key.startsWith(prefix) || prefix.startsWith(`${key}/`))) continue;
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p, key);
        else if (e.isFile() && key.startsWith(prefix)) {
          const st = await stat(p).catch(() => null);
          if (st) out.push({ key, bytes: st.size, lastModified: st.mtime });
        }
      }
    };
    await walk(start, baseKey);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const p = this.path(key);
    try {
      await rm(p, { force: true });
    } catch (err) {
      this.wrap(err, key, 'deleting');
    }
    // prune folders left empty, up to (not including) the root
    let dir = dirname(p);
    while (dir.startsWith(this.root + sep) && dir !== this.root) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
  }

  async close(): Promise<void> {}
}

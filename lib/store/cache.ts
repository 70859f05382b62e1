/**
 * A local read cache for store objects, keyed by sha256: `<dir>/<ab>/<sha256>`. Bounded by total
 * bytes with least-recently-used eviction; every read is verified (a corrupted entry is discarded
 * and fetched again), every fill is verified before it enters.
 *
 * Safe to share between processes (entries appear by rename, are immutable, and a reader copes with
 * an entry that another process evicted); the byte bound is enforced per process on what it sees.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { sha256File } from '../util/atomic';
import { StoreError } from './errors';
import { SHA256_HEX } from './hash';
import { TEMP_PREFIX } from './keys';
import { streamToFileAtomic } from './local';

export const CACHE_DIR_ENV = 'ANOMALY_SPOTTER_CACHE_DIR';

/** `$ANOMALY_SPOTTER_CACHE_DIR`, else `$XDG_CACHE_HOME` or `~/.cache`, then `/anomaly-spotter`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env[CACHE_DIR_ENV]) return env[CACHE_DIR_ENV]!;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'anomaly-spotter');
}

export interface CacheOptions {
  /** Upper bound on the bytes the cache keeps (an entry larger than this still passes through). */
  maxBytes: number;
}

export interface CacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Entries found corrupted on read (discarded and fetched again). */
  corrupt: number;
}

export class VerifiedCache {
  readonly dir: string;
  readonly maxBytes: number;
  /** sha256 -> size; Map order is LRU order (oldest first). */
  private readonly entries = new Map<string, number>();
  private readonly pinned = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<void>>();
  private total = 0;
  private counters = { hits: 0, misses: 0, evictions: 0, corrupt: 0 };

  private constructor(dir: string, opts: CacheOptions) {
    this.dir = resolve(dir);
    this.maxBytes = opts.maxBytes;
  }

  /** Opens (creating) a cache folder; existing entries are indexed oldest-use first. */
  static async open(dir: string, opts: CacheOptions): Promise<VerifiedCache> {
    if (!(opts.maxBytes > 0)) throw new Error(`cache maxBytes must be positive (got ${opts.maxBytes})`);
    const cache = new VerifiedCache(dir, opts);
    await mkdir(cache.dir, { recursive: true });
    const found: { sha: string; bytes: number; used: number }[] = [];
    for (const sub of await readdir(cache.dir, { withFileTypes: true })) {
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      for (const f of await readdir(join(cache.dir, sub.name))) {
        const p = join(cache.dir, sub.name, f);
        if (f.startsWith(TEMP_PREFIX)) {
          // a fill that died midway (an hour old: not another process's fill in progress)
          const st = await stat(p).catch(() => null);
          if (st && Date.now() - st.mtimeMs > 3_600_000) await rm(p, { force: true });
          continue;
        }
        if (!SHA256_HEX.test(f)) continue;
        const st = await stat(p).catch(() => null);
        if (st?.isFile()) found.push({ sha: f, bytes: st.size, used: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.used - b.used);
    for (const e of found) {
      cache.entries.set(e.sha, e.bytes);
      cache.total += e.bytes;
    }
    await cache.evict();
    return cache;
  }

  pathOf(sha: string): string {
    return join(this.dir, sha.slice(0, 2), sha);
  }

  has(sha: string): boolean {
    return this.entries.has(sha);
  }

  stats(): CacheStats {
    return { entries: this.entries.size, bytes: this.total, ...this.counters };
  }

  /**
   * Writes the object with hash `sha` to `dest` (atomically), from the cache when it holds a valid
   * copy, else by calling `fill(tmpPath)` to download it (the download is verified before it is
   * cached). Returns whether it was a hit.
   */
  async fetchTo(
    sha: string,
    dest: string,
    fill: (tmpPath: string) => Promise<void>,
  ): Promise<{ hit: boolean }> {
    if (!SHA256_HEX.test(sha)) throw new Error(`not a sha256: '${sha}'`);
    this.pin(sha);
    try {
      if (this.entries.has(sha) && (await this.copyOut(sha, dest))) {
        this.counters.hits++;
        return { hit: true };
      }
      this.counters.misses++;
      await this.fillOnce(sha, fill);
      if (!(await this.copyOut(sha, dest)))
        throw new StoreError(
          'CHECKSUM_MISMATCH',
          this.pathOf(sha),
          `${this.pathOf(sha)}: cache entry vanished or changed right after it was filled`,
        );
      return { hit: false };
    } finally {
      this.unpin(sha);
      await this.evict();
    }
  }

  /** Copies the entry to dest verifying it on the way; false (entry dropped) when missing or corrupt. */
  private async copyOut(sha: string, dest: string): Promise<boolean> {
    const p = this.pathOf(sha);
    try {
      await streamToFileAtomic(createReadStream(p), dest, sha, p, 'cache entry');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (err instanceof StoreError && err.code === 'CHECKSUM_MISMATCH') this.counters.corrupt++;
      else if (code !== 'ENOENT') throw err;
      this.drop(sha);
      await rm(p, { force: true });
      return false;
    }
    this.touch(sha);
    const now = new Date();
    await utimes(p, now, now).catch(() => {});
    return true;
  }

  private async fillOnce(sha: string, fill: (tmpPath: string) => Promise<void>): Promise<void> {
    const running = this.inflight.get(sha);
    if (running) return running;
    const job = (async () => {
      const final = this.pathOf(sha);
      await mkdir(join(this.dir, sha.slice(0, 2)), { recursive: true });
      const tmp = join(this.dir, sha.slice(0, 2), `${TEMP_PREFIX}${sha}.${randomBytes(4).toString('hex')}`);
      try {
        await fill(tmp);
        const actual = await sha256File(tmp);
        if (actual !== sha)
          throw new StoreError(
            'CHECKSUM_MISMATCH',
            final,
            `cache fill for sha256 ${sha}: checksum mismatch: expected ${sha}, got ${actual}`,
          );
        const { size } = await stat(tmp);
        await rename(tmp, final);
        this.drop(sha);
        this.entries.set(sha, size);
        this.total += size;
      } finally {
        await rm(tmp, { force: true });
      }
    })();
    this.inflight.set(sha, job);
    try {
      await job;
    } finally {
      this.inflight.delete(sha);
    }
  }

  private touch(sha: string): void {
    const size = this.entries.get(sha);
    if (size === undefined) return;
    this.entries.delete(sha);
    this.entries.set(sha, size);
  }

  private drop(sha: string): void {
    const size = this.entries.get(sha);
    if (size === undefined) return;
    this.entries.delete(sha);
    this.total -= size;
  }

  private pin(sha: string): void {
    this.pinned.set(sha, (this.pinned.get(sha) ?? 0) + 1);
  }

  private unpin(sha: string): void {
    const n = (this.pinned.get(sha) ?? 1) - 1;
    if (n <= 0) this.pinned.delete(sha);
    else this.pinned.set(sha, n);
  }

  /** Evicts least-recently-used, unpinned entries until the total fits. */
  private async evict(): Promise<void> {
    for (const [sha] of [...this.entries]) {
      if (this.total <= this.maxBytes) return;
      if (this.pinned.has(sha)) continue;
      this.drop(sha);
      this.counters.evictions++;
      await rm(this.pathOf(sha), { force: true });
    }
  }
}

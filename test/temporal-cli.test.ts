/**
 * The pipeline CLI end to end against a real dev server (TEMPORAL_ADDRESS mode) and the worker
 * supervisor process (test steps registered through the same runWorkerCli as worker.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/temporal-server';

let server: TestServer;
let supervisor: ChildProcess;
let dir: string;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'client.ts', ...args], {
      env: { ...process.env, TEMPORAL_ADDRESS: server.address },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'anomaly-cli-'));
  for (const c of ['bottle', 'cable']) mkdirSync(join(dir, 'data', c, 'train', 'good'), { recursive: true });
  writeFileSync(
    join(dir, 'cli.yaml'),
    [
      'name: clitest',
      'dataset: { root: data, categories: all }',
      'concurrency: 2',
      'defaults:',
      '  queue: cpu',
      '  retry: { maximum_attempts: 1, initial_interval: 1s, backoff: 2, maximum_interval: 1m }',
      'steps:',
      '  - { name: preprocess, activity: preprocess }',
      '  - { name: train, activity: train, needs: [preprocess], resources: { gpu: 1 }, params: { epochs: 2, epochMs: 100 } }',
      `  - { name: validate, activity: validate, needs: [train], params: { failIfExists: ${join(dir, 'marker')}, onlyCategories: [cable] } }`,
      '',
    ].join('\n'),
  );
  server = await startTestServer();
  const log = openSync(join(dir, 'workers.log'), 'a');
  // The supervisor: CPU worker in-process + one training worker child process.
  supervisor = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/support/test-worker.ts', '--train-slots', '1'],
    {
      env: { ...process.env, TEMPORAL_ADDRESS: server.address },
      stdio: ['ignore', log, log],
    },
  );
});

afterAll(async () => {
  if (supervisor && supervisor.exitCode === null) supervisor.kill('SIGKILL');
  await server?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('pipeline CLI', () => {
  it('reports a failed category with exit code 1, then resume re-runs only what failed', async () => {
    writeFileSync(join(dir, 'marker'), '');
    const common = ['--pipeline', join(dir, 'cli.yaml'), '--runs-root', join(dir, 'runs'), '--no-progress'];
    const first = await cli([...common, '--run-id', 'cli1']);
    expect(first.stderr).not.toMatch(/^\s+at /m);
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/bottle\s+completed\s+3\/3/);
    expect(first.stdout).toMatch(/cable\s+failed\s+2\/3\s+validate\s+marker .* exists/);

    rmSync(join(dir, 'marker'));
    const resumed = await cli(['resume', 'cli1', '--no-progress']);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/bottle\s+completed\s+3\/3 \(3 reused\)/);
    expect(resumed.stdout).toMatch(/cable\s+completed\s+3\/3 \(2 reused\)/);

    const status = await cli(['status', 'cli1', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).status).toBe('completed');
  });

  it('prints user errors as one line and exits 2', async () => {
    const unknown = await cli(['--pipeline', join(dir, 'cli.yaml'), '--category', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim()).toMatch(/^error: unknown category "nope"/);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const missing = await cli(['status', 'no-such-run']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe(
      "error: no pipeline run with id 'no-such-run' on this Temporal namespace",
    );
  });

  it('the worker supervisor shuts down gracefully on SIGTERM, children included', async () => {
    const exited = new Promise<number | null>((resolve) => supervisor.once('exit', (code) => resolve(code)));
    supervisor.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30_000))]);
    expect(code).toBe(0);
  });
});

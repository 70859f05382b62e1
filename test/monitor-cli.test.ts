import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTensorBoard } from '../lib/monitor/tensorboard-bin';
import { createRunTracker } from '../lib/monitor/tracker';

const CLI = ['--import', 'tsx', 'cli/monitor.ts'];
const TB = findTensorBoard();
if (!TB.path)
  console.warn(
    'monitor-cli: tensorboard not installed; live-server test skipped (pip install tensorboard==2.21.0)',
  );

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'monitor-cli-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('npm run monitor', () => {
  it('without TensorBoard: exits 1 and says how to install it', async () => {
    // An empty PATH hides both `tensorboard` and `python3`; node itself is started by absolute path.
    const child = spawn(process.execPath, [...CLI, '--logdir', tmp], {
      env: { PATH: join(tmp, 'empty-bin'), HOME: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(1);
    expect(stderr).toContain('TensorBoard is not installed');
    expect(stderr).toContain('pip install tensorboard');
  });

  it.skipIf(!TB.path)('with TensorBoard: serves the runs folder and stops on SIGTERM', async () => {
    const logdir = join(tmp, 'runs');
    const tracker = await createRunTracker({
      logDir: join(logdir, 'quick', 'bottle'),
      runName: 'x',
      experiment: 'x',
      mlflowUri: null,
    });
    await tracker.logScalars(1, { 'loss/mse': 0.5 });
    await tracker.close('FINISHED');

    const port = await freePort();
    const child = spawn(process.execPath, [...CLI, '--logdir', logdir, '--port', String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    try {
      let runs: string[] = [];
      for (let i = 0; i < 120 && !runs.includes('quick/bottle'); i++) {
        await new Promise((r) => setTimeout(r, 500));
        if (!out.includes('TensorBoard ready')) continue;
        runs = await fetch(`http://127.0.0.1:${port}/data/runs`).then(
          (r) => r.json() as Promise<string[]>,
          () => [],
        );
      }
      expect(out).toContain(`TensorBoard ready: http://127.0.0.1:${port}/`);
      expect(runs).toContain('quick/bottle');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).not.toBeNull();
  });
});

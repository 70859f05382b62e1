import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/monitor/logger';
import { createRunTracker } from '../lib/monitor/tracker';
import { pythonHas } from './monitor-python';

const HAVE_MLFLOW = pythonHas('mlflow.server');
if (!HAVE_MLFLOW)
  console.warn(
    'monitor-mlflow: python mlflow not installed; real-server tests skipped (pip install mlflow==3.17.2)',
  );

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(
    { test: 'mlflow' },
    { level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } },
  );
  return { logger, lines };
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'monitor-mlflow-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe.skipIf(!HAVE_MLFLOW)('MLflow against a real `mlflow server`', () => {
  let server: ChildProcess;
  let uri: string;
  let serverLog = '';

  beforeAll(async () => {
    const port = await freePort();
    uri = `http://127.0.0.1:${port}`;
    // sqlite backend + proxied artifact store in a temp dir; detached so afterAll can stop its whole process group.
    server = spawn(
      'python3',
      [
        '-m',
        'mlflow',
        'server',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--workers',
        '1',
        '--backend-store-uri',
        `sqlite:///${join(tmp, 'mlflow.db')}`,
        '--artifacts-destination',
        join(tmp, 'artifacts'),
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    server.stdout?.on('data', (d) => {
      serverLog += d;
    });
    server.stderr?.on('data', (d) => {
      serverLog += d;
    });
    // Startup imports a large app: 10-20 s on an idle machine, over a minute on a loaded 2-core one.
    const deadline = Date.now() + 170_000;
    while (Date.now() < deadline) {
      if (server.exitCode !== null) throw new Error(`mlflow server exited: ${serverLog.slice(-2000)}`);
      const ok = await fetch(`${uri}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`mlflow server did not become healthy: ${serverLog.slice(-2000)}`);
  }, 180_000);

  afterAll(() => {
    if (server?.pid && server.exitCode === null) process.kill(-server.pid, 'SIGTERM');
  });

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${uri}/api/2.0/mlflow/${path}`);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as T;
  }

  it('logs params, metric history, images and artifacts to one run, and a retry continues it', async () => {
    const { logger, lines } = captureLogger();
    const report = join(tmp, 'report.json');
    await writeFile(report, '{"auroc": 0.9}\n');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#0f0' } })
      .png()
      .toBuffer();
    const opts = {
      logDir: join(tmp, 'tb'),
      runName: 'quick/r1/bottle',
      experiment: 'anomaly-spotter/test', // a slash, as users may name experiments
      mlflowUri: uri,
      tags: { category: 'bottle', pipeline: 'quick', runId: 'r1' },
      logger,
    };
    const tracker = await createRunTracker(opts);
    await tracker.logParams({ lr: 0.001, epochs: 3, augment: true });
    for (let step = 1; step <= 3; step++)
      await tracker.logScalars(step, { 'loss/mse': 1 / step, 'val/loss': 2 / step });
    await tracker.logImages(3, [{ tag: 'recon/sample 0', png }]);
    await tracker.logArtifacts([{ path: report, artifactPath: 'report/report.json' }]);
    await tracker.close('FAILED'); // as if the attempt crashed

    // Retried attempt: same runName -> same MLflow run, continues the history.
    // Its changed param is rejected by MLflow (params are immutable): warned and dropped, the rest still arrives.
    const retry = await createRunTracker(opts);
    await retry.logParams({ lr: 0.002 });
    await retry.logScalars(4, { 'loss/mse': 0.2 });
    await retry.close('FINISHED');
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.map((l) => [l.msg, l.op])).toEqual([['MLflow rejected a request; dropped', 'params']]);
    const ready = lines.filter((l) => l.msg === 'MLflow run ready');
    expect(ready.map((l) => l.resumed)).toEqual([false, true]);
    const runId = ready[0].mlflowRunId as string;
    expect(ready[1].mlflowRunId).toBe(runId);

    type Run = {
      run: {
        info: { status: string; run_name: string };
        data: { params: { key: string; value: string }[]; tags: { key: string; value: string }[] };
      };
    };
    const { run } = await api<Run>(`runs/get?run_id=${runId}`);
    expect(run.info.status).toBe('FINISHED');
    expect(run.info.run_name).toBe('quick/r1/bottle');
    expect(Object.fromEntries(run.data.params.map((p) => [p.key, p.value]))).toEqual({
      lr: '0.001',
      epochs: '3',
      augment: 'true',
    });
    expect(run.data.tags).toEqual(
      expect.arrayContaining([
        { key: 'category', value: 'bottle' },
        { key: 'pipeline', value: 'quick' },
      ]),
    );

    const hist = await api<{ metrics: { step: number; value: number }[] }>(
      `metrics/get-history?run_id=${runId}&metric_key=loss/mse`,
    );
    expect(hist.metrics.map((m) => [m.step, m.value]).sort((a, b) => a[0] - b[0])).toEqual([
      [1, 1],
      [2, 0.5],
      [3, 1 / 3],
      [4, 0.2],
    ]);

    const reportList = await api<{ files?: { path: string; file_size: number }[] }>(
      `artifacts/list?run_id=${runId}&path=report`,
    );
    expect(reportList.files).toEqual([
      expect.objectContaining({ path: 'report/report.json', file_size: 15 }),
    ]);
    const imgList = await api<{ files?: { path: string }[] }>(
      `artifacts/list?run_id=${runId}&path=images/recon_sample_0`,
    );
    expect(imgList.files?.map((f) => f.path)).toEqual(['images/recon_sample_0/step_3.png']);
  });
});

describe('MLflow unavailable: training calls never fail', () => {
  it('closed port: no throw, one warning with URI and reason', async () => {
    const port = await freePort(); // nothing listens here now
    const { logger, lines } = captureLogger();
    const uri = `http://127.0.0.1:${port}`;
    const tracker = await createRunTracker({
      logDir: join(tmp, 'down'),
      runName: 'x',
      experiment: 'x',
      mlflowUri: uri,
      logger,
    });
    await tracker.logParams({ lr: 1 });
    for (let step = 1; step <= 5; step++) await tracker.logScalars(step, { loss: 1 });
    await tracker.logArtifacts([{ path: join(tmp, 'missing.bin') }]);
    await tracker.close('FINISHED');
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings[0]).toMatchObject({ mlflowUri: uri, msg: expect.stringContaining('unavailable') });
    expect(String(warnings[0].reason)).toMatch(/ECONNREFUSED|fetch failed/);
    expect(warnings.filter((l) => String(l.msg).includes('unavailable'))).toHaveLength(1);
  });

  it('hung server: logScalars returns at once and close() is bounded', async () => {
    const hung: Server = createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    const uri = `http://127.0.0.1:${(hung.address() as { port: number }).port}`;
    const { logger, lines } = captureLogger();
    try {
      const tracker = await createRunTracker({
        logDir: join(tmp, 'hung'),
        runName: 'x',
        experiment: 'x',
        mlflowUri: uri,
        logger,
        closeTimeoutMs: 1500,
      });
      const t0 = Date.now();
      for (let step = 1; step <= 20; step++) await tracker.logScalars(step, { loss: 1 / step });
      expect(Date.now() - t0).toBeLessThan(1000);
      const t1 = Date.now();
      await tracker.close('FINISHED');
      expect(Date.now() - t1).toBeLessThan(4000);
      expect(lines.some((l) => l.level === 40 && l.mlflowUri === uri)).toBe(true);
    } finally {
      hung.closeAllConnections();
      hung.close();
    }
  });

  it('unsupported URI scheme disables MLflow with a warning, TensorBoard still written', async () => {
    const { logger, lines } = captureLogger();
    const tracker = await createRunTracker({
      logDir: join(tmp, 'file-uri'),
      runName: 'x',
      experiment: 'x',
      mlflowUri: 'file:///tmp/mlruns',
      logger,
    });
    await tracker.logScalars(1, { loss: 1 });
    await tracker.close('FINISHED');
    expect(lines.find((l) => l.level === 40)?.reason).toMatch(/unsupported MLflow tracking URI scheme/);
  });
});

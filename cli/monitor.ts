/**
 * `npm run monitor [-- --logdir runs --port 6006 --host 127.0.0.1]`: serves the TensorBoard event
 * files that training writes under the runs folder. Exits 1 with install instructions when
 * TensorBoard is not installed.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { redact } from '../lib/monitor/mlflow-client';
import { findTensorBoard } from '../lib/monitor/tensorboard-bin';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`'${value}' is not a port number (0-65535)`);
  return n;
}

const program = new Command('monitor')
  .description(
    'Open TensorBoard on the training runs (loss curves, learning rate, throughput, reconstructions)',
  )
  .option('--logdir <dir>', 'folder to scan recursively for event files', 'runs')
  .option('--port <port>', 'TensorBoard port', port, 6006)
  .option('--host <host>', 'interface to bind (0.0.0.0 to share on the network)', '127.0.0.1')
  .parse();

const opts = program.opts<{ logdir: string; port: number; host: string }>();
const logdir = resolve(opts.logdir);
const tb = findTensorBoard();

if (!tb.path) {
  process.stderr.write(
    [
      'TensorBoard is not installed (looked in: ' + tb.searched.join(', ') + ').',
      'Install it with:',
      '  pip install tensorboard',
      `then run again:  npm run monitor -- --logdir ${opts.logdir}`,
      'Or point at an existing executable: TENSORBOARD_BIN=/path/to/tensorboard npm run monitor',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

if (!existsSync(logdir)) {
  process.stderr.write(
    `note: ${logdir} does not exist yet; TensorBoard will show runs once training writes them.\n`,
  );
}

const url = `http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${opts.port}/`;
process.stdout.write(`Starting TensorBoard (${tb.path}) on ${logdir}\n`);
const child = spawn(tb.path, ['--logdir', logdir, '--port', String(opts.port), '--host', opts.host], {
  stdio: ['ignore', 'inherit', 'inherit'],
});
child.on('error', (err) => {
  process.stderr.write(`could not start ${tb.path}: ${err.message}\n`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));

// Announce the URL once TensorBoard answers, so the line is not lost in its startup output.
void (async () => {
  for (let i = 0; i < 120 && child.exitCode === null; i++) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) {
      process.stdout.write(`TensorBoard ready: ${url}\n`);
      if (process.env.MLFLOW_TRACKING_URI) {
        process.stdout.write(`MLflow tracking server: ${redact(process.env.MLFLOW_TRACKING_URI)}\n`);
      }
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
})();

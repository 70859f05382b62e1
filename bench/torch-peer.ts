/** The PyTorch peer (shared/bench/torch_reference.py) that our benchmarks compare against, in the same run. */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export interface TorchPeerResult {
  peer: string;
  threads: number;
  train_ms_per_step: number;
  train_img_per_s: number;
  infer_ms_per_batch: number;
  infer_img_per_s: number;
}

export interface TorchPeerOptions {
  script: string;
  threads: number;
  size: number;
  batch: number;
  widths: number[] | string;
  steps: number;
}

/** Runs the peer once; returns its JSON line, or why it did not run (e.g. torch not installed). */
export function runTorchPeer(o: TorchPeerOptions): TorchPeerResult | string {
  const script = resolve(o.script);
  const widths = Array.isArray(o.widths) ? o.widths.join(',') : o.widths;
  const args = [script, '--threads', String(o.threads), '--size', String(o.size), '--batch', String(o.batch)];
  args.push('--widths', widths, '--steps', String(o.steps));
  const r = spawnSync('python3', args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || '').trim().split('\n').at(-1);
    return `PyTorch peer failed (${script}; needs pip install torch==2.13.0): ${why}`;
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as TorchPeerResult;
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

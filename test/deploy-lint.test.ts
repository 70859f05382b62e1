/**
 * The deployment files (deploy/: Dockerfile, compose.yaml, k8s/) pass `npm run lint:deploy`
 * (hadolint, strict kubernetes-validate, the compose checker), and the lint really fails on broken
 * copies of them (so a green run means something).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { TASK_QUEUES } from '../lib/pipeline/plan';
import { checkCompose } from '../scripts/check-compose';

const repo = resolve(import.meta.dirname, '..');
const lint = (dir?: string) =>
  spawnSync('bash', [join(repo, 'scripts', 'lint-deploy.sh'), ...(dir ? [dir] : [])], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 90_000,
  });

const tmp = mkdtempSync(join(tmpdir(), 'anomaly-deploy-lint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('deployment files', () => {
  it('pass npm run lint:deploy', () => {
    const r = lint();
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('hadolint: deploy/Dockerfile ok');
    expect(r.stdout).toMatch(/kubernetes-validate \(strict, [\d.]+\): \d+ files ok/);
    expect(r.stdout).toContain('compose: deploy/compose.yaml ok');
  });

  it('the lint fails on a broken Dockerfile, manifest or compose file', () => {
    const dir = join(tmp, 'deploy');
    cpSync(join(repo, 'deploy'), dir, { recursive: true });
    const edit = (file: string, from: string | RegExp, to: string) => {
      const path = join(dir, file);
      const before = readFileSync(path, 'utf8');
      const after = before.replace(from, to);
      expect(after, `${file}: edit did not apply`).not.toBe(before);
      writeFileSync(path, after);
    };
    edit('Dockerfile', /^FROM \$\{NODE_IMAGE\} AS runtime$/m, 'FROM debian AS runtime'); // untagged base
    edit('k8s/worker-gpu.yaml', 'terminationGracePeriodSeconds:', 'terminationGracePeriodSecond:');
    edit('compose.yaml', '- data:/app/data', '- dataz:/app/data');
    const r = lint(dir);
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status).toBe(1);
    expect(out).toContain('DL3006');
    expect(out).toMatch(/worker-gpu\.yaml did not validate.*terminationGracePeriodSecond/);
    expect(out).toContain("'dataz' is not declared under volumes");
  });

  it('the compose file wires the cluster the docs describe', () => {
    expect(checkCompose(join(repo, 'deploy', 'compose.yaml'))).toEqual([]);
    const c = parse(readFileSync(join(repo, 'deploy', 'compose.yaml'), 'utf8'), { merge: true });
    expect(Object.keys(c.services)).toEqual(
      expect.arrayContaining(['temporal', 'seaweedfs', 'worker-cpu', 'worker-gpu']),
    );
    expect(c.services['worker-gpu'].deploy.resources.reservations.devices[0]).toMatchObject({
      driver: 'nvidia',
      capabilities: ['gpu'],
    });
    expect(c.services['worker-cpu'].command).toEqual(['worker.ts', '--role', 'cpu']);
    expect(c.services['worker-gpu'].command).toEqual(['worker.ts', '--role', 'train']);
    // Runs live in the bucket: no shared runs volume, and serve reads the same bucket.
    expect(c.services['worker-cpu'].environment.ANOMALY_SPOTTER_RUNS_ROOT).toMatch(/^s3:\/\/.+\/runs$/);
    expect(c.services['worker-cpu'].volumes.some((v: string) => v.includes('/app/runs'))).toBe(false);
    expect(c.services.serve.command[2]).toMatch(/^s3:\/\//);
  });

  it('the Kubernetes workers poll the queues the workflows use, GPU pods request GPUs', () => {
    const docs = (file: string) =>
      parseAllDocuments(readFileSync(join(repo, 'deploy', 'k8s', file), 'utf8')).map((d) => d.toJS());
    const [cpu] = docs('worker-cpu.yaml');
    const [gpu] = docs('worker-gpu.yaml');
    expect(cpu.metadata.labels['anomaly-spotter/task-queue']).toBe(TASK_QUEUES.cpu);
    expect(gpu.metadata.labels['anomaly-spotter/task-queue']).toBe(TASK_QUEUES.gpu);
    expect(cpu.spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--role', 'cpu']));
    const g = gpu.spec.template.spec;
    expect(g.containers[0].args).toEqual(['worker.ts', '--role', 'train']);
    expect(g.containers[0].resources.limits['nvidia.com/gpu']).toBe(1);
    // longer than the worker's own 60 s shutdownForceTime plus a checkpoint write
    expect(g.terminationGracePeriodSeconds).toBeGreaterThan(300);
    for (const d of [cpu, gpu]) {
      const env = d.spec.template.spec.containers[0].envFrom;
      expect(env).toEqual([
        { configMapRef: { name: 'anomaly-spotter-config' } },
        { secretRef: { name: 'anomaly-spotter-secrets' } },
      ]);
    }
  });
});

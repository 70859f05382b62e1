/**
 * scripts/install-cuda-provider.sh offline: it finds onnxruntime-node's native folder and version,
 * takes the provider libraries from an onnxruntime-gpu wheel of the same version (a stand-in wheel
 * here: the real one is 250 MB), refuses a wheel of another version, and says what is missing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = 'scripts/install-cuda-provider.sh';

function fakeOrt(version: string): string {
  const root = mkdtempSync(join(tmpdir(), 'cuda-provider-'));
  const pkg = join(root, 'node_modules', 'onnxruntime-node');
  const native = join(pkg, 'bin', 'napi-v6', 'linux', 'x64');
  mkdirSync(native, { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version }, null, 2));
  writeFileSync(join(native, 'libonnxruntime.so.1'), '');
  return native;
}

function fakeWheel(dir: string, version: string): string {
  const wheel = join(dir, `onnxruntime_gpu-${version}-cp312-cp312-manylinux_2_28_x86_64.whl`);
  execFileSync('python3', [
    '-c',
    `import zipfile,sys
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    for n in ('libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'):
        z.writestr('onnxruntime/capi/' + n, b'not really ' + n.encode())`,
    wheel,
  ]);
  return wheel;
}

const run = (args: string[]) => spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('install-cuda-provider.sh', () => {
  it('--check names the missing provider libraries', () => {
    const native = fakeOrt('1.30.0');
    const r = run(['--check', '--ort-dir', native]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('onnxruntime-node 1.30.0');
    expect(r.stdout).toContain(`MISSING: ${native}/libonnxruntime_providers_shared.so`);
  });

  it('installs the two libraries from a same-version wheel and refuses another version', () => {
    const native = fakeOrt('1.30.0');
    const other = run([
      '--ort-dir',
      native,
      '--wheel',
      fakeWheel(mkdtempSync(join(tmpdir(), 'w-')), '1.29.0'),
    ]);
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/is 1\.29\.0 but onnxruntime-node is 1\.30\.0/);
    const r = run(['--ort-dir', native, '--wheel', fakeWheel(mkdtempSync(join(tmpdir(), 'w-')), '1.30.0')]);
    expect(r.stdout).toContain(
      'installed libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so (1.30.0)',
    );
    for (const f of ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'])
      expect(existsSync(join(native, f))).toBe(true);
    // The CUDA libraries: all found (exit 0) on a CUDA host, else listed (exit 3).
    if (r.status === 3) expect(r.stdout).toMatch(/MISSING CUDA libraries: lib/);
    else expect(r.status).toBe(0);
  });
});

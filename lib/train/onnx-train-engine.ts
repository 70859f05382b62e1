/**
 * The ONNX Runtime training engine: forward and backward pass of the U-Net-lite on ONNX Runtime's
 * native CPU kernels (graphs from lib/models/autoencoder/train-graph), the loss and its gradient w.r.t. the
 * reconstruction on ONNX Runtime too (lib/models/autoencoder/loss-graph: mse, ssim, edge; the backbone
 * perceptual term: perceptual-graph), or on tfjs when a tfjs perceptual model is configured, clipping
 * and Adam/AdamW in JS (lib/train/adam).
 *
 * Weights and Adam moments live here, in Float32Arrays, between `syncToModel` calls: the trainer
 * syncs before validation, checkpoints and image logging, so the tfjs model and optimizer stay the
 * single source of truth on disk (same checkpoint format, resumable by either engine).
 * onnxruntime-node is imported lazily: the tfjs engine never loads it.
 */

import * as tf from '@tensorflow/tfjs';
import type * as Ort from 'onnxruntime-node';
import type { TrainingConfig } from '../config/schema';
import { buildGeneratedBackwardGraph } from '../models/autoencoder/autodiff-unet';
import {
  buildLossGraph,
  LOSS_GRAD,
  LOSS_PRED,
  LOSS_TARGET,
  LOSS_TOTAL,
  lossTermName,
  type OnnxLossTerm,
  onnxLossTerms,
} from '../models/autoencoder/loss-graph';
import type { LossFunction, LossTerm } from '../models/autoencoder/losses';
import {
  buildPerceptualGraph,
  PERCEPTUAL_GRAD,
  PERCEPTUAL_VALUE,
} from '../models/autoencoder/perceptual-graph';
import {
  activationName,
  biasName,
  buildBackwardGraph,
  buildForwardGraph,
  type ConvLayerSpec,
  gradName,
  kernelName,
  TRAIN_INPUT,
  TRAIN_OUTPUT,
  TRAIN_OUTPUT_GRAD,
  unetConvLayers,
} from '../models/autoencoder/train-graph';
import type { ExecutionProviderChoice } from '../onnx/execution-provider';
import { ortSessionOptions } from '../onnx/session';
import { type AdamSlot, adamStep, clipByGlobalNorm } from './adam';
import type { StepOutput, TrainEngine, TrainEngineRuntime } from './engine-types';
import { tfjsLossValue } from './tfjs-train-engine';

export interface OnnxTrainEngineOptions {
  /** Intra-op threads of every session. */
  threads: number;
  /** The execution provider of every session (lib/onnx/execution-provider); default CPU. */
  executionProvider?: ExecutionProviderChoice;
  /**
   * The backward graph: 'hand-written' (lib/models/autoencoder/train-graph) or 'generated' by the autodiff
   * (lib/models/autoencoder/autodiff-unet; the same ops and bit-identical gradients, test/onnx-autodiff).
   * Default: $ANOMALY_SPOTTER_BACKWARD_GRAPH when it is one of these, else 'hand-written'.
   */
  backwardGraph?: BackwardGraphKind;
}

export type BackwardGraphKind = 'hand-written' | 'generated';

function backwardGraphKind(opts: OnnxTrainEngineOptions): BackwardGraphKind {
  if (opts.backwardGraph) return opts.backwardGraph;
  const env = process.env.ANOMALY_SPOTTER_BACKWARD_GRAPH;
  return env === 'generated' ? 'generated' : 'hand-written';
}

interface Param extends AdamSlot {
  /** ONNX input name (`<layer>/kernel`, `<layer>/bias`). */
  input: string;
  layer: string;
  shape: number[];
  isKernel: boolean;
}

/** The loss graph's session and the terms it outputs (the configured non-zero ones). */
interface LossGraph {
  session: Ort.InferenceSession;
  terms: OnnxLossTerm[];
  /** The backbone perceptual term's own session (perceptual-graph), and its weight. */
  perceptual: { session: Ort.InferenceSession; weight: number } | null;
}

/** The loss of one step: its value, unweighted terms, and dLoss/dReconstruction (NHWC). */
interface LossResult extends StepOutput {
  grad: Ort.Tensor;
}

/** The sessions of one training step (rebuilt by setThreads). */
interface EngineSessions {
  forward: Ort.InferenceSession;
  backward: Ort.InferenceSession;
  /** null when the loss needs tfjs (a perceptual model). */
  lossGraph: LossGraph | null;
}

/** Batch x image pixels up to which training sessions keep ONNX Runtime's memory arena (16 x 128²). */
export const ARENA_MAX_PIXELS_PER_STEP = 16 * 128 * 128;

/** One optimisation step's worth of ONNX Runtime sessions and the parameters they train. */
export class OnnxTrainEngine implements TrainEngine {
  readonly name = 'onnx' as const;
  private iterations = 0;

  private constructor(
    private readonly ort: typeof Ort,
    private sessions: EngineSessions,
    private readonly layers: ConvLayerSpec[],
    private readonly params: Param[],
    private readonly model: tf.LayersModel,
    private readonly optimizer: tf.Optimizer,
    private readonly loss: LossFunction,
    private readonly cfg: TrainingConfig,
    private currentThreads: number,
    readonly executionProvider: ExecutionProviderChoice,
    private readonly backwardKind: BackwardGraphKind,
  ) {}

  /** Intra-op threads of every session (setThreads changes it between steps). */
  get threads(): number {
    return this.currentThreads;
  }

  private get forward(): Ort.InferenceSession {
    return this.sessions.forward;
  }

  private get backward(): Ort.InferenceSession {
    return this.sessions.backward;
  }

  private get lossGraph(): LossGraph | null {
    return this.sessions.lossGraph;
  }

  /** Every session of a step, built for `threads` intra-op threads. */
  private static async buildSessions(
    ort: typeof Ort,
    cfg: TrainingConfig,
    loss: LossFunction,
    threads: number,
    executionProvider: ExecutionProviderChoice,
    backwardKind: BackwardGraphKind,
  ): Promise<EngineSessions> {
    // ONNX Runtime's memory arena keeps each session's peak buffers for the next step. Measured at
    // 128 px, 2 threads (mse): batch 8 arena on 675 ms/step, 731 MB peak RSS vs off 882 ms, 577 MB;
    // batch 32 on 2785 ms, 1949 MB vs off 3174 ms, 1244 MB. So: on for small steps, where it buys
    // 10-25 % for ~150-400 MB; off for large ones, which must stay well under 2 GB.
    const arena = cfg.batch_size * cfg.image_size ** 2 <= ARENA_MAX_PIXELS_PER_STEP;
    const sessionOptions = ortSessionOptions({ threads, arena, executionProvider });
    const forward = await ort.InferenceSession.create(
      buildForwardGraph(cfg.image_size, cfg.model.widths),
      sessionOptions,
    );
    const buildBackward = backwardKind === 'generated' ? buildGeneratedBackwardGraph : buildBackwardGraph;
    const backward = await ort.InferenceSession.create(
      buildBackward(cfg.image_size, cfg.model.widths),
      sessionOptions,
    );
    // Without a tfjs perceptual model every term has an ONNX graph: the loss never touches tfjs.
    let lossGraph: LossGraph | null = null;
    const onnxPerceptual = loss.weights.perceptual > 0 ? loss.perceptual.onnx : null;
    if (loss.weights.perceptual === 0 || onnxPerceptual) {
      const pixelWeights = { ...loss.weights, perceptual: 0 };
      const session = await ort.InferenceSession.create(
        buildLossGraph(cfg.image_size, pixelWeights),
        sessionOptions,
      );
      const perceptual = onnxPerceptual
        ? {
            session: await ort.InferenceSession.create(
              buildPerceptualGraph(cfg.image_size, onnxPerceptual.weights, onnxPerceptual.stages),
              sessionOptions,
            ),
            weight: loss.weights.perceptual,
          }
        : null;
      lossGraph = { session, terms: onnxLossTerms(pixelWeights), perceptual };
    }
    return { forward, backward, lossGraph };
  }

  static async create(
    model: tf.LayersModel,
    optimizer: tf.Optimizer,
    loss: LossFunction,
    cfg: TrainingConfig,
    opts: OnnxTrainEngineOptions,
  ): Promise<OnnxTrainEngine> {
    const ort = await import('onnxruntime-node');
    const layers = unetConvLayers(cfg.image_size, cfg.model.widths);
    const executionProvider: ExecutionProviderChoice = opts.executionProvider ?? {
      provider: 'cpu',
      requested: 'cpu',
      source: 'config',
      attempts: [],
    };
    const backwardKind = backwardGraphKind(opts);
    const sessions = await OnnxTrainEngine.buildSessions(
      ort,
      cfg,
      loss,
      opts.threads,
      executionProvider,
      backwardKind,
    );
    const params: Param[] = [];
    for (const l of layers) {
      for (const [input, isKernel] of [
        [kernelName(l.name), true],
        [biasName(l.name), false],
      ] as const) {
        const shape = isKernel ? [l.k, l.k, l.ci, l.co] : [l.co];
        const size = shape.reduce((a, b) => a * b, 1);
        params.push({
          input,
          layer: l.name,
          shape,
          isKernel,
          value: new Float32Array(size),
          m: new Float32Array(size),
          v: new Float32Array(size),
        });
      }
    }
    const engine = new OnnxTrainEngine(
      ort,
      sessions,
      layers,
      params,
      model,
      optimizer,
      loss,
      cfg,
      opts.threads,
      executionProvider,
      backwardKind,
    );
    await engine.syncFromModel();
    return engine;
  }

  /**
   * Rebuilds every session for `threads` intra-op threads (weights and Adam state live here, not in
   * the sessions, so training continues where it was). Between steps only.
   */
  async setThreads(threads: number): Promise<void> {
    if (threads === this.currentThreads) return;
    const next = await OnnxTrainEngine.buildSessions(
      this.ort,
      this.cfg,
      this.loss,
      threads,
      this.executionProvider,
      this.backwardKind,
    );
    const old = this.sessions;
    this.sessions = next;
    this.currentThreads = threads;
    for (const s of [old.forward, old.backward, old.lossGraph?.session, old.lossGraph?.perceptual?.session])
      await s?.release();
  }

  get description(): string {
    const terms = this.lossGraph
      ? [
          ...this.lossGraph.terms,
          ...(this.lossGraph.perceptual ? ['perceptual (EfficientNet-Lite0 features)'] : []),
        ]
      : [];
    const where = this.lossGraph
      ? `the loss (${terms.join(', ') || 'none'}) and its gradient`
      : 'the loss and its gradient on tfjs (perceptual model)';
    const ep = this.executionProvider;
    const on = [
      ep.deviceId !== undefined ? `device ${ep.deviceId}` : '',
      ep.gpu !== undefined ? `host GPU ${ep.gpu}` : '',
    ].filter(Boolean);
    const epText = `${ep.provider}${on.length ? ` (${on.join(', ')})` : ''}`;
    return `ONNX Runtime ${this.ort.env.versions.common}, ${epText} execution provider, ${this.threads} thread(s), float32 (no mixed precision): forward and backward pass; ${where}`;
  }

  /** What ran, for run metadata and reports. */
  get runtime(): TrainEngineRuntime {
    const ep = this.executionProvider;
    return {
      runtime: `onnxruntime-node ${this.ort.env.versions.common}`,
      executionProvider: ep.provider,
      threads: this.threads,
      deviceRequested: ep.requested,
      ...(ep.deviceId !== undefined ? { cudaDeviceId: ep.deviceId } : {}),
      ...(ep.gpu !== undefined ? { gpu: ep.gpu } : {}),
      ...(ep.fallbackReason ? { deviceFallback: ep.fallbackReason } : {}),
    };
  }

  private paramFeeds(which: 'all' | 'kernels'): Record<string, Ort.Tensor> {
    const feeds: Record<string, Ort.Tensor> = {};
    for (const p of this.params)
      if (which === 'all' || p.isKernel) feeds[p.input] = new this.ort.Tensor('float32', p.value, p.shape);
    return feeds;
  }

  async step(images: Float32Array, n: number, lr: number, targets = images): Promise<StepOutput> {
    const s = this.cfg.image_size;
    const image = new this.ort.Tensor('float32', images, [n, s, s, 3]);
    const target = targets === images ? image : new this.ort.Tensor('float32', targets, [n, s, s, 3]);
    const fwd = await this.forward.run({ [TRAIN_INPUT]: image, ...this.paramFeeds('all') });
    const loss = this.lossGraph
      ? await this.onnxLoss(this.lossGraph, target, fwd[TRAIN_OUTPUT])
      : await this.tfjsLoss(targets, fwd[TRAIN_OUTPUT].data as Float32Array, n);

    const feeds: Record<string, Ort.Tensor> = {
      [TRAIN_INPUT]: image,
      [TRAIN_OUTPUT_GRAD]: loss.grad,
      ...this.paramFeeds('kernels'),
    };
    for (const l of this.layers) feeds[activationName(l.name)] = fwd[activationName(l.name)];
    const bwd = await this.backward.run(feeds);
    const grads = this.params.map((p) => bwd[gradName(p.input)].data as Float32Array);

    if (this.cfg.grad_clip !== null) clipByGlobalNorm(grads, this.cfg.grad_clip);
    adamStep(this.params, grads, lr, this.iterations);
    this.iterations++;
    // AdamW: decoupled weight decay on kernels (not biases), w <- w - lr * wd * w, as trainOnBatch.
    if (this.cfg.optimizer.name === 'adamw' && this.cfg.optimizer.weight_decay > 0) {
      const keep = 1 - lr * this.cfg.optimizer.weight_decay;
      for (const p of this.params)
        if (p.isKernel) for (let i = 0; i < p.value.length; i++) p.value[i] *= keep;
    }
    for (const r of [fwd, bwd]) for (const t of Object.values(r)) t.dispose();
    loss.grad.dispose();
    return { loss: loss.loss, terms: loss.terms };
  }

  async evaluate(images: Float32Array, n: number): Promise<number> {
    const s = this.cfg.image_size;
    const image = new this.ort.Tensor('float32', images, [n, s, s, 3]);
    const fwd = await this.forward.run({ [TRAIN_INPUT]: image, ...this.paramFeeds('all') });
    try {
      if (this.lossGraph) {
        const loss = await this.onnxLoss(this.lossGraph, image, fwd[TRAIN_OUTPUT]);
        loss.grad.dispose();
        return loss.loss;
      }
      // A perceptual model: the value on tfjs, no gradient.
      const pred = fwd[TRAIN_OUTPUT].data as Float32Array;
      return await tfjsLossValue(this.loss, images, n, s, () => tf.tensor4d(pred, [n, s, s, 3]));
    } finally {
      for (const t of Object.values(fwd)) t.dispose();
    }
  }

  /** The loss graph on ONNX Runtime; its outputs other than the gradient are released here. */
  private async onnxLoss(graph: LossGraph, target: Ort.Tensor, pred: Ort.Tensor): Promise<LossResult> {
    const out = await graph.session.run({ [LOSS_TARGET]: target, [LOSS_PRED]: pred });
    const scalar = (name: string) => (out[name].data as Float32Array)[0];
    const terms: Partial<Record<LossTerm, number>> = {};
    for (const t of graph.terms) terms[t] = scalar(lossTermName(t));
    const result = { loss: scalar(LOSS_TOTAL), terms, grad: out[LOSS_GRAD] };
    for (const [name, t] of Object.entries(out)) if (name !== LOSS_GRAD) t.dispose();
    if (graph.perceptual) {
      // The backbone term: its value and gradient added, weighted, to the pixel terms'.
      const { session, weight } = graph.perceptual;
      const p = await session.run({ [LOSS_TARGET]: target, [LOSS_PRED]: pred });
      const value = (p[PERCEPTUAL_VALUE].data as Float32Array)[0];
      terms.perceptual = value;
      result.loss += weight * value;
      const g = result.grad.data as Float32Array;
      const pg = p[PERCEPTUAL_GRAD].data as Float32Array;
      for (let i = 0; i < g.length; i++) g[i] += weight * pg[i];
      for (const t of Object.values(p)) t.dispose();
    }
    return result;
  }

  /** dLoss/dReconstruction with tfjs' autodiff of the configured loss (the network is not on the tape). */
  private async tfjsLoss(targets: Float32Array, pred: Float32Array, n: number): Promise<LossResult> {
    const s = this.cfg.image_size;
    let termTensors: Partial<Record<LossTerm, tf.Scalar>> = {};
    const { value, grad } = tf.tidy(() => {
      const x = tf.tensor4d(targets, [n, s, s, 3]);
      const p = tf.tensor4d(pred, [n, s, s, 3]);
      const vg = tf.valueAndGrad((q: tf.Tensor) => {
        const out = this.loss.compute(x, q as tf.Tensor4D);
        termTensors = Object.fromEntries(Object.entries(out.terms).map(([k, t]) => [k, tf.keep(t)]));
        return out.total;
      })(p);
      return { value: vg.value, grad: vg.grad };
    });
    const lossValue = (await value.data())[0];
    const dPred = (await grad.data()) as Float32Array;
    value.dispose();
    grad.dispose();
    const terms: Partial<Record<LossTerm, number>> = {};
    for (const [k, t] of Object.entries(termTensors) as [LossTerm, tf.Scalar][]) {
      terms[k] = (await t.data())[0];
      t.dispose();
    }
    return { loss: lossValue, terms, grad: new this.ort.Tensor('float32', dPred, [n, s, s, 3]) };
  }

  /** Layer weights of the model in this engine's parameter order, checked against the expected shapes. */
  private modelWeights(): tf.LayerVariable[] {
    const vars: tf.LayerVariable[] = [];
    for (const l of this.layers) {
      const ws = this.model.getLayer(l.name).weights;
      if (ws.length !== 2)
        throw new Error(`onnx engine: layer ${l.name} has ${ws.length} weights, expected 2`);
      vars.push(ws[0], ws[1]);
    }
    vars.forEach((v, i) => {
      const want = this.params[i].shape.join('x');
      if (v.shape.join('x') !== want)
        throw new Error(`onnx engine: ${v.name} is ${v.shape.join('x')}, the ONNX graph expects ${want}`);
    });
    return vars;
  }

  /**
   * Reads weights and Adam state from the tfjs model and optimizer (after building or resuming).
   * Adam moments are matched by position: tfjs keeps them in trainable-weight order, which is the
   * layer order this engine uses.
   */
  async syncFromModel(): Promise<void> {
    const vars = this.modelWeights();
    for (const [i, v] of vars.entries()) this.params[i].value.set(v.read().dataSync() as Float32Array);
    const state = await this.optimizer.getWeights();
    this.iterations = state.length > 0 ? (await state[0].tensor.data())[0] : 0;
    state[0]?.tensor.dispose(); // a fresh scalar, not the optimizer's own
    const moments = state.slice(1);
    const count = this.params.length;
    if (moments.length === 2 * count) {
      this.params.forEach((p, i) => {
        p.m.set(moments[i].tensor.dataSync() as Float32Array);
        p.v.set(moments[count + i].tensor.dataSync() as Float32Array);
      });
    } else {
      if (moments.length > 0)
        throw new Error(`onnx engine: optimizer holds ${moments.length} moments for ${count} parameters`);
      for (const p of this.params) {
        p.m.fill(0);
        p.v.fill(0);
      }
    }
  }

  /** Writes weights and Adam state into the tfjs model and optimizer (before validation and checkpoints). */
  async syncToModel(): Promise<void> {
    const vars = this.modelWeights();
    tf.tidy(() => {
      for (const [i, v] of vars.entries()) v.write(tf.tensor(this.params[i].value, this.params[i].shape));
    });
    const old = await this.optimizer.getWeights();
    old[0]?.tensor.dispose();
    const names = vars.map((v) => (v.read() as tf.Variable).name);
    const fresh = [
      { name: 'iter', tensor: tf.scalar(this.iterations, 'int32') },
      ...this.params.map((p, i) => ({ name: `${names[i]}/m`, tensor: tf.tensor(p.m, p.shape) })),
      ...this.params.map((p, i) => ({ name: `${names[i]}/v`, tensor: tf.tensor(p.v, p.shape) })),
    ];
    await this.optimizer.setWeights(fresh);
    // setWeights wraps each tensor in a new variable (sharing its data): drop our handles and the
    // variables it replaced.
    tf.dispose(fresh.map((f) => f.tensor));
    tf.dispose(old.slice(1).map((o) => o.tensor));
  }

  async release(): Promise<void> {
    await this.forward.release();
    await this.backward.release();
    await this.lossGraph?.session.release();
  }
}

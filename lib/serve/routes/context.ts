import type { ServeMetrics } from '../metrics';
import type { ServedModel } from '../models';
import type { ModelPredictor } from '../predictor';

/** The inference engine as /healthz reports it. */
export interface EngineInfo {
  name: 'tfjs' | 'onnx';
  executionProvider?: string;
  [key: string]: string | number | boolean | null | undefined;
}

/** What the route plugins share: the loaded models, their predictors, metrics and limits. */
export interface ServeContext {
  served: ServedModel[];
  /** By category. */
  models: Map<string, ModelPredictor>;
  metrics: ServeMetrics;
  limits: { maxBodyMb: number; maxBodyBytes: number; maxFiles: number; maxPixels: number };
  /** A bearer token is required (documents 401 and the security scheme). */
  auth: boolean;
  isShuttingDown(): boolean;
  /** What scores requests, for /healthz. */
  engineInfo?: EngineInfo;
}

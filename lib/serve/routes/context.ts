import type { ServeMetrics } from '../metrics';
import type { ServedModel } from '../models';
import type { ModelPredictor } from '../predictor';

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
}

/**
 * The parts of the anomaly map's definition that the tfjs computation (lib/eval/anomaly-map) and the
 * ONNX graph (lib/models/autoencoder/anomaly-map-graph) share, so that both compute the same map and score.
 */
import type { AnomalyMapConfig } from '../config/schema';
import { UserError } from '../util/errors';
import { gaussianKernel1d } from './ssim';

export function checkAnomalyMapConfig(cfg: AnomalyMapConfig): void {
  if (cfg.mse_weight === 0 && cfg.ssim_weight === 0) {
    throw new UserError(
      'INVALID_CONFIG',
      'anomaly_map.mse_weight and anomaly_map.ssim_weight are both 0: the anomaly map would be constant',
    );
  }
}

/**
 * The smoothing blur's normalised 1-D Gaussian for h x w maps: radius ceil(4 sigma) like
 * scipy.ndimage.gaussian_filter (truncate=4), capped at the map size (mirror padding needs no more).
 * Shared by the tfjs blur (lib/eval/anomaly-map) and the ONNX graph (lib/models/autoencoder/anomaly-map-graph), so
 * both blur with the same taps.
 */
export function smoothingKernel(sigma: number, h: number, w: number): number[] {
  const radius = Math.min(Math.ceil(4 * sigma), h, w);
  return gaussianKernel1d(2 * radius + 1, sigma);
}

/**
 * Pixels left out of the image score on each edge of an h x w map: `score_border` of each side,
 * rounded down, always leaving at least one pixel.
 */
export function scoreBorder(h: number, w: number, cfg: AnomalyMapConfig): { y: number; x: number } {
  const side = (n: number) => Math.min(Math.floor((cfg.score_border ?? 0) * n), Math.floor((n - 1) / 2));
  return { y: side(h), x: side(w) };
}

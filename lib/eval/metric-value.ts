/**
 * A metric that may be undefined on the data at hand (one class only, no defect pixels, all scores
 * tied). Reports show the reason instead of a number; JSON never carries NaN or Infinity.
 */
export type MetricValue = { value: number; reason?: undefined } | { value: null; reason: string };

export const defined = (value: number): MetricValue =>
  Number.isFinite(value) ? { value } : { value: null, reason: `not a finite number (${value})` };

export const undefinedBecause = (reason: string): MetricValue => ({ value: null, reason });

/** "0.9876" or "undefined: <reason>", for tables. */
export function formatMetric(m: MetricValue, digits = 4): string {
  return m.value === null ? `undefined: ${m.reason}` : m.value.toFixed(digits);
}

/**
 * The step registry: every activity a pipeline YAML may name, bound to its domain implementation,
 * plus the cross-category summary. Workers hand this to `createActivities`; CLIs call steps directly.
 */
import { join } from 'node:path';
import { preprocessStep } from './data/preprocess-step';
import { thresholdStep } from './eval/threshold-step';
import { validateStep } from './eval/validate-step';
import { packageStep } from './package/package-step';
import { promoteStep } from './package/promote-step';
import type { CategoryOutcome, SummaryResult } from './pipeline/outcome';
import { reportStep } from './report/report-step';
import { writeSummary } from './report/summary';
import type { StepActivity, StepFunction } from './steps/contracts';
import { artifact } from './steps/result';
import { checkpointStep } from './train/checkpoint-step';
import { trainStep } from './train/train-step';

export const STEPS: Record<StepActivity, StepFunction> = {
  preprocess: preprocessStep,
  train: trainStep,
  validate: validateStep,
  checkpoint: checkpointStep,
  threshold: thresholdStep,
  report: reportStep,
  package: packageStep,
  promote: promoteStep,
};

/** Writes `<runDir>/summary/summary.{md,html,json}` from the categories' outcomes. */
export async function summaryStep(runDir: string, outcomes: CategoryOutcome[]): Promise<SummaryResult> {
  const files = await writeSummary(
    runDir,
    outcomes.map((o) => {
      const report = Object.values(o.results).find((r) => r.activity === 'report');
      const reportJson = report?.outputs.find((a) => a.name === 'report_json');
      return {
        category: o.category,
        status: o.status,
        error: o.failure ? `${o.failure.step}: ${o.failure.message}` : undefined,
        reportJson: reportJson ? join(runDir, reportJson.path) : undefined,
      };
    }),
  );
  const outputs = await Promise.all(
    Object.entries(files).map(([name, path]) => artifact({ runDir }, name, path)),
  );
  const completed = outcomes.filter((o) => o.status === 'completed').length;
  return {
    outputs,
    summary: { categories: outcomes.length, completed, failed: outcomes.length - completed },
  };
}

/** Worker entry for tests: the real worker runtime with the test steps (spawned as a process). */
import { fileURLToPath } from 'node:url';
import { runWorkerCli } from '../../temporal/worker-runtime';
import { TEST_STEPS, testSummary } from './test-steps';

await runWorkerCli(
  process.argv.slice(2),
  { steps: TEST_STEPS, summary: testSummary },
  fileURLToPath(import.meta.url),
);
process.exit(0);

/**
 * Worker entry for tests: the real worker runtime with the test steps (spawned as a process).
 * TEST_WORKER_CRASH_TRAIN=1: a training child exits with code 3 at once (a crash loop).
 */
import { fileURLToPath } from 'node:url';
import { runWorkerCli } from '../../temporal/worker-runtime';
import { TEST_STEPS, testSummary } from './test-steps';

const argv = process.argv.slice(2);
if (process.env.TEST_WORKER_CRASH_TRAIN === '1' && argv.join(' ').includes('--role train')) {
  process.stderr.write('test worker: crashing on purpose\n');
  process.exit(3);
}
await runWorkerCli(argv, { steps: TEST_STEPS, summary: testSummary }, fileURLToPath(import.meta.url));
process.exit(0);

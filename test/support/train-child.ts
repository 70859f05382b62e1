/**
 * Child process for the crash-resume test: trains the tiny config into a checkpoint folder and
 * prints the history as one JSON line. The test kills it with SIGKILL mid-run and starts it again.
 */
import { selectBackend } from '../../lib/model/backend';
import { train } from '../../lib/train/trainer';
import { childConfig, tinySplit } from './train-fixtures';

const [checkpointDir] = process.argv.slice(2);
await selectBackend('wasm', 'train');
const r = await train({
  config: childConfig(),
  train: tinySplit(16),
  val: tinySplit(4, 32, 3, 'val'),
  checkpointDir,
  logger: { info: () => {}, warn: (m) => console.error(m) },
});
console.log(JSON.stringify({ resumedFrom: r.resumedFrom, epochsRun: r.epochsRun, history: r.history }));

import { DEFAULT_DEMO_DATA_DIR } from '../config/paths';
import { type SynthOptions, synthesizeDataset } from './synth';

/**
 * The bundled demo dataset: generated once (128 px, seed 0) on first use, atomically, so concurrent
 * callers and crashes never see half a dataset. Returns the folder. `opts` (tests) only apply when
 * the dataset is generated.
 */
export async function ensureDemoDataset(
  dir: string = DEFAULT_DEMO_DATA_DIR,
  opts: SynthOptions = {},
): Promise<string> {
  await synthesizeDataset(dir, { size: 128, seed: 0, ...opts });
  return dir;
}

import type { TrainingConfig } from '../config/schema';
import { selectBackend } from '../model/backend';

/** Activates the inference backend the config asks for (same selection as serving) and returns its name. */
export async function useInferenceBackend(pref: TrainingConfig['backend']): Promise<string> {
  return (await selectBackend(pref, 'infer')).name;
}

import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { formatIssues } from '../config/issues';
import { layerProblems } from '../config/load';
import { DEFAULT_PIPELINES_DIR, displayPath } from '../config/paths';
import { readYamlFile } from '../config/yaml-file';
import { UserError } from '../util/errors';
import { dagProblems } from './dag';
import { type PipelineSpec, pipelineSchema } from './schema';

export interface LoadedPipeline {
  /** Absolute path of the YAML file. */
  path: string;
  text: string;
  spec: PipelineSpec;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** A path, or a bare name looked up as `pipelines/<name>.yaml`. */
export async function resolvePipelinePath(
  pathOrName: string,
  pipelinesDir = DEFAULT_PIPELINES_DIR,
): Promise<string> {
  const direct = resolve(pathOrName);
  if (await isFile(direct)) return direct;
  if (!pathOrName.includes('/') && !extname(pathOrName)) {
    const named = join(pipelinesDir, `${pathOrName}.yaml`);
    if (await isFile(named)) return named;
  }
  const available = (await readdir(pipelinesDir).catch(() => [] as string[]))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => basename(f, '.yaml'));
  throw new UserError(
    'INVALID_PIPELINE',
    `pipeline not found: ${pathOrName}${available.length ? ` (available in ${displayPath(pipelinesDir)}: ${available.join(', ')})` : ''}`,
  );
}

function fail(problems: string[]): never {
  throw new UserError('INVALID_PIPELINE', problems.join('\n'), { details: { problems } });
}

/** Parses and validates a pipeline YAML: schema, DAG and its `training:` block. */
export async function loadPipeline(pathOrName: string, pipelinesDir?: string): Promise<LoadedPipeline> {
  const path = await resolvePipelinePath(pathOrName, pipelinesDir);
  const file = await readYamlFile(path, 'INVALID_PIPELINE');
  if (!file) return fail([`pipeline not found: ${pathOrName}`]);
  const shown = displayPath(path);
  const res = pipelineSchema.safeParse(file.value ?? {});
  if (!res.success)
    fail(formatIssues(res.error.issues, pipelineSchema, file.value, { file: shown, prefix: [] }));
  const spec = res.data;
  const problems = [
    ...dagProblems(shown, spec.steps),
    ...layerProblems({ source: { file: shown, prefix: ['training'] }, value: spec.training }),
  ];
  if (problems.length) fail(problems);
  return { path, text: file.text, spec };
}

/**
 * Training configuration loading. Precedence (later wins):
 *   schema defaults < config/training.yaml < config/categories.yaml[category]
 *   < pipeline `training:` block < CLI overrides.
 * Each layer is validated on its own (merged onto the defaults, which are valid), so every problem is
 * reported against the file and key that introduced it.
 */
import { join } from 'node:path';
import { parse as parseYamlValue } from 'yaml';
import { UserError } from '../util/errors';
import { dottedPath, formatIssues, type ProblemSource, showValue } from './issues';
import { deepMerge, isPlainObject, type PlainObject } from './merge';
import { DEFAULT_CONFIG_DIR, displayPath } from './paths';
import { type DeepPartial, defaultTrainingConfig, type TrainingConfig, trainingConfigSchema } from './schema';
import { readYamlFile, type YamlFile } from './yaml-file';

/** Category names: a folder name, never a path (`../x`, `a/b`, `.hidden` are rejected). */
export const CATEGORY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export interface ConfigLayer {
  source: ProblemSource;
  value: unknown;
}

export interface ConfigFiles {
  dir: string;
  /** Raw texts (absent files omitted), for the run plan's config hash. */
  texts: { path: string; text: string }[];
  training: PlainObject;
  categories: Record<string, PlainObject>;
}

/** Problems of one layer, as lines; empty when valid. */
export function layerProblems(layer: ConfigLayer): string[] {
  if (layer.value === undefined || layer.value === null) return [];
  if (!isPlainObject(layer.value)) {
    return [
      `${layer.source.file}: ${dottedPath(layer.source.prefix)}: expected a mapping of training settings, got ${showValue(layer.value)}`,
    ];
  }
  const res = trainingConfigSchema.safeParse(deepMerge(defaultTrainingConfig(), layer.value));
  return res.success ? [] : formatIssues(res.error.issues, trainingConfigSchema, layer.value, layer.source);
}

export function throwIfProblems(problems: string[]): void {
  if (problems.length > 0) {
    throw new UserError('INVALID_CONFIG', problems.join('\n'), { details: { problems } });
  }
}

function topLevelProblems(file: YamlFile, key: string): string[] {
  if (file.value === null || file.value === undefined) return [];
  if (!isPlainObject(file.value))
    return [
      `${displayPath(file.path)}: (top level): expected a mapping with key ${key}, got ${showValue(file.value)}`,
    ];
  return Object.keys(file.value)
    .filter((k) => k !== key)
    .map((k) => `${displayPath(file.path)}: ${k}: unknown key (known keys: ${key})`);
}

function section(file: YamlFile | null, key: string): unknown {
  return file && isPlainObject(file.value) ? file.value[key] : undefined;
}

/** Reads and validates `training.yaml` and `categories.yaml` (both optional) of a config folder. */
export async function loadConfigFiles(configDir: string = DEFAULT_CONFIG_DIR): Promise<ConfigFiles> {
  const trainingFile = await readYamlFile(join(configDir, 'training.yaml'), 'INVALID_CONFIG');
  const categoriesFile = await readYamlFile(join(configDir, 'categories.yaml'), 'INVALID_CONFIG');
  const problems: string[] = [];
  const files: ConfigFiles = { dir: configDir, texts: [], training: {}, categories: {} };

  if (trainingFile) {
    files.texts.push({ path: trainingFile.path, text: trainingFile.text });
    problems.push(...topLevelProblems(trainingFile, 'training'));
    const value = section(trainingFile, 'training');
    const lp = layerProblems({
      source: { file: displayPath(trainingFile.path), prefix: ['training'] },
      value,
    });
    problems.push(...lp);
    if (lp.length === 0 && isPlainObject(value)) files.training = value;
  }
  if (categoriesFile) {
    files.texts.push({ path: categoriesFile.path, text: categoriesFile.text });
    problems.push(...topLevelProblems(categoriesFile, 'categories'));
    const cats = section(categoriesFile, 'categories');
    const shown = displayPath(categoriesFile.path);
    if (cats !== undefined && cats !== null && !isPlainObject(cats)) {
      problems.push(
        `${shown}: categories: expected a mapping of category name to settings, got ${showValue(cats)}`,
      );
    } else if (isPlainObject(cats)) {
      for (const [name, value] of Object.entries(cats)) {
        if (!CATEGORY_NAME_RE.test(name)) {
          problems.push(
            `${shown}: categories.${name}: invalid category name (letters, digits, _ and -; no paths)`,
          );
          continue;
        }
        const lp = layerProblems({ source: { file: shown, prefix: ['categories', name] }, value });
        problems.push(...lp);
        if (lp.length === 0 && isPlainObject(value)) files.categories[name] = value;
      }
    }
  }
  throwIfProblems(problems);
  return files;
}

/** Merges the layers for one category (null: no per-category overrides) and validates the result. */
export function resolveTrainingConfig(
  files: ConfigFiles,
  category: string | null,
  extra: ConfigLayer[] = [],
): TrainingConfig {
  throwIfProblems(extra.flatMap(layerProblems));
  const merged = deepMerge(
    defaultTrainingConfig(),
    files.training,
    category ? files.categories[category] : undefined,
    ...extra.map((l) => l.value),
  );
  const res = trainingConfigSchema.safeParse(merged);
  if (!res.success) {
    throwIfProblems(
      formatIssues(res.error.issues, trainingConfigSchema, merged, {
        file: '(merged configuration)',
        prefix: [],
      }),
    );
  }
  return res.data as TrainingConfig;
}

export interface LoadTrainingConfigOptions {
  configDir?: string;
  category?: string | null;
  /** The pipeline YAML's `training:` block and the file it came from. */
  pipelineTraining?: unknown;
  pipelineFile?: string;
  overrides?: DeepPartial<TrainingConfig>;
}

/** One-call loader: config files + category + pipeline block + CLI overrides. */
export async function loadTrainingConfig(opts: LoadTrainingConfigOptions = {}): Promise<TrainingConfig> {
  const files = await loadConfigFiles(opts.configDir);
  return resolveTrainingConfig(
    files,
    opts.category ?? null,
    extraLayers(opts.pipelineTraining, opts.pipelineFile, opts.overrides),
  );
}

export function extraLayers(
  pipelineTraining: unknown,
  pipelineFile: string | undefined,
  overrides: unknown,
): ConfigLayer[] {
  return [
    {
      source: { file: pipelineFile ? displayPath(pipelineFile) : '(pipeline)', prefix: ['training'] },
      value: pipelineTraining,
    },
    { source: { file: 'command line', prefix: [] }, value: overrides },
  ];
}

/** One `--set` key segment: a config key name (also keeps `__proto__` & co. out of the object). */
const SET_KEY_SEGMENT_RE = /^[A-Za-z][A-Za-z0-9_]*$/;

/**
 * Parses CLI `--set key.path=value` items (value read as YAML: `epochs=3`, `augmentation.enabled=false`,
 * `model.widths=[8,16]`) into a nested override object. Only the syntax is checked here; whether
 * the keys and values are valid settings is checked with the schema (`layerProblems`).
 */
export function parseSetOverrides(items: readonly string[]): DeepPartial<TrainingConfig> {
  const out: PlainObject = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UserError('INVALID_ARGUMENT', `--set ${item}: expected key=value, e.g. epochs=3`);
    const keys = item
      .slice(0, eq)
      .trim()
      .replace(/^training\./, '')
      .split('.');
    const badKey = keys.find((k) => !SET_KEY_SEGMENT_RE.test(k));
    if (badKey !== undefined) {
      throw new UserError(
        'INVALID_ARGUMENT',
        `--set ${item}: invalid key ${JSON.stringify(item.slice(0, eq))}: expected dotted setting names like optimizer.lr`,
      );
    }
    let value: unknown;
    try {
      value = parseYamlValue(item.slice(eq + 1));
    } catch (err) {
      // A YAML syntax error (e.g. `model.widths=[8,`) is the user's typo, not an internal error.
      const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      throw new UserError('INVALID_ARGUMENT', `--set ${item}: the value is not valid YAML (${reason})`, {
        cause: err,
      });
    }
    let cur = out;
    keys.slice(0, -1).forEach((k) => {
      if (!isPlainObject(cur[k])) cur[k] = {};
      cur = cur[k] as PlainObject;
    });
    cur[keys[keys.length - 1]] = value;
  }
  return out as DeepPartial<TrainingConfig>;
}

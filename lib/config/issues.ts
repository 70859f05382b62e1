/**
 * Turns zod issues into one readable line per problem:
 *   `<file>: <dotted.path>: expected <what the schema wants>, got <the bad value>`
 * The "expected" text is read from the schema itself, so messages stay true when the schema changes.
 */
import type { z } from 'zod';

/** The parts of a zod v4 schema definition this module reads. */
interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  element?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  options?: z.ZodType[];
  entries?: Record<string, string | number>;
  values?: unknown[];
  valueType?: z.ZodType;
  checks?: { _zod: { def: CheckDef } }[];
}

interface CheckDef {
  check: string;
  format?: string;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
  maximum?: number;
}

export type PathSegment = PropertyKey;

export interface ProblemSource {
  /** File name as shown to the user (or e.g. `--set`). */
  file: string;
  /** Path prefix of the validated value inside that file, e.g. `['training']`. */
  prefix: PathSegment[];
}

function defOf(schema: z.ZodType): SchemaDef {
  return (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;
}

/** Strips default/optional/nullable/pipe wrappers; remembers nullability for the message. */
function unwrap(schema: z.ZodType): { schema: z.ZodType; nullable: boolean } {
  let cur = schema;
  let nullable = false;
  for (let i = 0; i < 16; i++) {
    const def = defOf(cur);
    if (def.type === 'nullable') nullable = true;
    if (
      (def.type === 'default' ||
        def.type === 'optional' ||
        def.type === 'nullable' ||
        def.type === 'prefault' ||
        def.type === 'readonly') &&
      def.innerType
    ) {
      cur = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      cur = def.in;
    } else {
      break;
    }
  }
  return { schema: cur, nullable };
}

/** The sub-schema at `path`, or null when the path leaves the schema (e.g. an unknown key). */
export function schemaAt(schema: z.ZodType, path: readonly PathSegment[]): z.ZodType | null {
  let cur: z.ZodType | null = schema;
  for (const seg of path) {
    if (!cur) return null;
    const def = defOf(unwrap(cur).schema);
    if (def.type === 'object' && def.shape) cur = def.shape[String(seg)] ?? null;
    else if (def.type === 'array' && def.element) cur = def.element;
    else if (def.type === 'record' && def.valueType) cur = def.valueType;
    else return null;
  }
  return cur;
}

/** Keys an object schema (at any wrapper depth) accepts. */
export function knownKeys(schema: z.ZodType): string[] {
  const def = defOf(unwrap(schema).schema);
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

function describeNumber(def: SchemaDef): string {
  let isInt = false;
  let min: { value: number; inclusive: boolean } | null = null;
  let max: { value: number; inclusive: boolean } | null = null;
  for (const c of def.checks ?? []) {
    const cd = c._zod.def;
    if (cd.check === 'number_format' && cd.format && /int/.test(cd.format)) isInt = true;
    if (cd.check === 'greater_than' && cd.value !== undefined)
      min = { value: cd.value, inclusive: !!cd.inclusive };
    if (cd.check === 'less_than' && cd.value !== undefined)
      max = { value: cd.value, inclusive: !!cd.inclusive };
  }
  const noun = isInt ? 'integer' : 'number';
  if (min && min.value === 0 && !min.inclusive && !max) return `positive ${noun}`;
  if (min && max) {
    const excl = !min.inclusive || !max.inclusive ? ' (exclusive)' : '';
    return `${noun} between ${min.value} and ${max.value}${excl}`;
  }
  if (min) return `${noun} ${min.inclusive ? '>=' : '>'} ${min.value}`;
  if (max) return `${noun} ${max.inclusive ? '<=' : '<'} ${max.value}`;
  return noun;
}

/** A short human description of what a schema accepts ("positive integer", "one of adam, adamw"). */
export function describeSchema(schema: z.ZodType): string {
  const { schema: inner, nullable } = unwrap(schema);
  const def = defOf(inner);
  let text: string;
  switch (def.type) {
    case 'number':
      text = describeNumber(def);
      break;
    case 'boolean':
      text = 'true or false';
      break;
    case 'string':
      text = 'a string';
      break;
    case 'enum':
      text = `one of ${Object.values(def.entries ?? {}).join(', ')}`;
      break;
    case 'literal':
      text = (def.values ?? []).map((v) => JSON.stringify(v)).join(' or ');
      break;
    case 'array': {
      const lens = (def.checks ?? []).map((c) => c._zod.def);
      const lo = lens.find((c) => c.check === 'min_length')?.minimum;
      const hi = lens.find((c) => c.check === 'max_length')?.maximum;
      const count =
        lo !== undefined && hi !== undefined
          ? ` of ${lo} to ${hi} items`
          : lo
            ? ` of at least ${lo} item(s)`
            : '';
      text = `a list${count}, each ${def.element ? describeSchema(def.element) : 'item'}`;
      break;
    }
    case 'object':
      text = `a mapping with keys ${Object.keys(def.shape ?? {}).join(', ')}`;
      break;
    case 'record':
      text = 'a mapping';
      break;
    case 'union':
      text = (def.options ?? []).map(describeSchema).join(', or ');
      break;
    default:
      text = def.type;
  }
  return nullable ? `${text}, or null` : text;
}

/** Renders a value for a message: numbers as is, strings quoted, structures as short JSON. */
export function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

/** `training.steps[1].heartbeat`: array indices in brackets. */
export function dottedPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out || '(top level)';
}

/** One line per zod issue, naming file, path, expectation and the value found. */
export function formatIssues(
  issues: readonly z.core.$ZodIssue[],
  schema: z.ZodType,
  input: unknown,
  src: ProblemSource,
): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const parent = schemaAt(schema, issue.path);
      const known = parent ? knownKeys(parent) : [];
      for (const key of issue.keys) {
        const where = dottedPath([...src.prefix, ...issue.path, key]);
        lines.push(
          `${src.file}: ${where}: unknown key${known.length ? ` (known keys: ${known.join(', ')})` : ''}`,
        );
      }
      continue;
    }
    const where = dottedPath([...src.prefix, ...issue.path]);
    const got = showValue(valueAt(input, issue.path));
    if (issue.code === 'custom') {
      lines.push(`${src.file}: ${where}: ${issue.message}, got ${got}`);
      continue;
    }
    const sub = schemaAt(schema, issue.path);
    const expected = sub ? describeSchema(sub) : issue.message;
    lines.push(`${src.file}: ${where}: expected ${expected}, got ${got}`);
  }
  return lines;
}

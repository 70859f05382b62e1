export type PlainObject = Record<string, unknown>;

export function isPlainObject(v: unknown): v is PlainObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Later layers win. Objects merge key by key; arrays and scalars are replaced whole (a list of
 * widths is one value, not something to splice); `undefined` never overrides.
 */
export function deepMerge(...layers: unknown[]): PlainObject {
  const out: PlainObject = {};
  for (const layer of layers) {
    if (!isPlainObject(layer)) continue;
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      out[key] =
        isPlainObject(value) && isPlainObject(out[key]) ? deepMerge(out[key], value) : structuredClone(value);
    }
  }
  return out;
}

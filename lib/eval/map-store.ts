import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256, writeFileAtomic, writeJsonAtomic } from '../util/atomic';
import { UserError } from '../util/errors';

/**
 * Anomaly maps on disk: one raw little-endian float32 blob (`<name>.f32`, count*size*size) plus a JSON
 * index (`<name>.json`) naming the image of each slice. float32 rather than float16: metrics are
 * computed from these maps and must not depend on a lossy storage format; a 128 px test split of a few
 * hundred images is tens of MB, which is fine for a run directory.
 */
export interface MapIndex {
  format: 'float32-le';
  file: string;
  sha256: string;
  count: number;
  /** Maps are square: size x size values each. */
  size: number;
  /** Image id (tensor-cache record id) of map i. */
  ids: string[];
}

export interface StoredMaps {
  index: MapIndex;
  maps: Float32Array;
}

function toLittleEndianBytes(maps: Float32Array): Uint8Array {
  const bytes = new Uint8Array(maps.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < maps.length; i++) view.setFloat32(i * 4, maps[i], true);
  return bytes;
}

/** Writes `<dir>/<name>.f32` then its index `<dir>/<name>.json` (the commit point); returns the index path. */
export async function writeMaps(
  dir: string,
  name: string,
  maps: Float32Array,
  size: number,
  ids: string[],
): Promise<string> {
  if (maps.length !== ids.length * size * size)
    throw new Error(`writeMaps: ${maps.length} values is not ${ids.length} maps of ${size}x${size}`);
  const bytes = toLittleEndianBytes(maps);
  const file = `${name}.f32`;
  await writeFileAtomic(join(dir, file), bytes);
  const index: MapIndex = { format: 'float32-le', file, sha256: sha256(bytes), count: ids.length, size, ids };
  const indexPath = join(dir, `${name}.json`);
  await writeJsonAtomic(indexPath, index);
  return indexPath;
}

export async function readMaps(indexPath: string): Promise<StoredMaps> {
  let index: MapIndex;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8')) as MapIndex;
  } catch (err) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `${indexPath}: cannot read anomaly-map index; rerun the validate step`,
      {
        cause: err,
      },
    );
  }
  const blobPath = join(dirname(indexPath), index.file);
  const buf = await readFile(blobPath);
  if (buf.byteLength !== index.count * index.size * index.size * 4 || sha256(buf) !== index.sha256) {
    throw new UserError(
      'INVALID_ARGUMENT',
      `${blobPath}: size or sha256 differs from ${indexPath}; rerun the validate step`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const maps = new Float32Array(buf.byteLength / 4);
  for (let i = 0; i < maps.length; i++) maps[i] = view.getFloat32(i * 4, true);
  return { index, maps };
}

/**
 * A minimal ZIP reader (stored and deflated entries, no ZIP64): enough to read single files out of a
 * game's .pk3 archive without extracting it. Reads only the central directory and the entries asked for.
 */
import { open } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';

interface Entry {
  method: number;
  compressedSize: number;
  localOffset: number;
}

async function centralDirectory(fd: Awaited<ReturnType<typeof open>>): Promise<Map<string, Entry>> {
  const { size } = await fd.stat();
  const tailLen = Math.min(size, 22 + 65_535);
  const tail = Buffer.alloc(tailLen);
  await fd.read(tail, 0, tailLen, size - tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip archive (no end of central directory)');
  const cdSize = tail.readUInt32LE(eocd + 12);
  const cdOffset = tail.readUInt32LE(eocd + 16);
  const cd = Buffer.alloc(cdSize);
  await fd.read(cd, 0, cdSize, cdOffset);
  const entries = new Map<string, Entry>();
  let p = 0;
  while (p + 46 <= cd.length && cd.readUInt32LE(p) === 0x02014b50) {
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    entries.set(cd.toString('utf8', p + 46, p + 46 + nameLen), {
      method: cd.readUInt16LE(p + 10),
      compressedSize: cd.readUInt32LE(p + 20),
      localOffset: cd.readUInt32LE(p + 42),
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Reads the named entries; a name that is not in the archive is absent from the result. */
export async function readZipEntries(zipPath: string, names: string[]): Promise<Map<string, Buffer>> {
  const fd = await open(zipPath, 'r');
  try {
    const entries = await centralDirectory(fd);
    const out = new Map<string, Buffer>();
    for (const name of names) {
      const e = entries.get(name);
      if (!e) continue;
      const local = Buffer.alloc(30);
      await fd.read(local, 0, 30, e.localOffset);
      if (local.readUInt32LE(0) !== 0x04034b50) throw new Error(`bad local header for ${name}`);
      const start = e.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      const data = Buffer.alloc(e.compressedSize);
      await fd.read(data, 0, e.compressedSize, start);
      if (e.method === 0) out.set(name, data);
      else if (e.method === 8) out.set(name, inflateRawSync(data));
      else throw new Error(`unsupported zip compression method ${e.method} for ${name}`);
    }
    return out;
  } finally {
    await fd.close();
  }
}

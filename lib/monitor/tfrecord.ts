import { maskedCrc32c } from './crc32c';

/**
 * One TFRecord: uint64 length (LE), masked CRC32C of those 8 bytes, the data, masked CRC32C of
 * the data. This is the framing TensorBoard expects in `events.out.tfevents.*` files.
 */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** Splits a buffer of TFRecords back into payloads, verifying both CRCs (for tests and tooling). */
export function readRecords(buf: Uint8Array): Uint8Array[] {
  const records: Uint8Array[] = [];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error(`truncated TFRecord header at byte ${off}`);
    const len = Number(view.getBigUint64(off, true));
    if (view.getUint32(off + 8, true) !== maskedCrc32c(buf.subarray(off, off + 8))) {
      throw new Error(`bad length CRC at byte ${off}`);
    }
    const start = off + 12;
    if (start + len + 4 > buf.length) throw new Error(`truncated TFRecord at byte ${off}`);
    const data = buf.subarray(start, start + len);
    if (view.getUint32(start + len, true) !== maskedCrc32c(data))
      throw new Error(`bad data CRC at byte ${off}`);
    records.push(data);
    off = start + len + 4;
  }
  return records;
}

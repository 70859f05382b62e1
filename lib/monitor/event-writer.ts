import type { FileHandle } from 'node:fs/promises';
import { mkdir, open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  encodeFileVersionEvent,
  encodeSessionStartEvent,
  encodeSummaryEvent,
  type SummaryValue,
} from './event-proto';
import { pngInfo } from './png-info';
import { frameRecord } from './tfrecord';

let fileCounter = 0;

/**
 * Writes one TensorBoard event file (`events.out.tfevents.<unix-ts>.<hostname>.<pid>.<n>`) in `logDir`.
 *
 * Append-only by design, NOT written through writeFileAtomic: an event file is a log that a live
 * TensorBoard tails while training runs; atomic replacement would hide progress until the end and
 * rewrite the whole file per epoch. A crash can at worst leave a truncated last record, which
 * TensorBoard's reader tolerates (it stops at the incomplete record). The pid/counter suffix (as
 * TensorFlow's own writer adds) keeps two writers in the same second, e.g. a retried attempt, apart.
 *
 * Every record is handed to the OS as soon as it is written (no user-space buffer), so TensorBoard
 * sees it at its next poll; writes are serialised so records never interleave.
 */
export class EventFileWriter {
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(logDir: string): Promise<EventFileWriter> {
    await mkdir(logDir, { recursive: true });
    const now = Date.now() / 1000;
    const name = `events.out.tfevents.${Math.floor(now)}.${hostname()}.${process.pid}.${fileCounter++}`;
    const path = join(logDir, name);
    const fh = await open(path, 'wx'); // never append to a file another writer owns
    const writer = new EventFileWriter(path, fh);
    await writer.writeRecord(encodeFileVersionEvent(now));
    return writer;
  }

  addScalars(step: number, scalars: Record<string, number>, wallTime = Date.now() / 1000): Promise<void> {
    const values: SummaryValue[] = Object.entries(scalars).map(([tag, simpleValue]) => ({
      tag,
      simpleValue,
    }));
    if (values.length === 0) return this.chain;
    return this.writeRecord(encodeSummaryEvent(wallTime, step, values));
  }

  /** The run restarts at `step`: TensorBoard discards what earlier files logged from `step` on. */
  restartAt(step: number, msg: string, wallTime = Date.now() / 1000): Promise<void> {
    return this.writeRecord(encodeSessionStartEvent(wallTime, step, msg));
  }

  /** `png` must be PNG bytes; dimensions and colorspace are read from its header. */
  addImages(
    step: number,
    images: { tag: string; png: Uint8Array }[],
    wallTime = Date.now() / 1000,
  ): Promise<void> {
    const values: SummaryValue[] = images.map(({ tag, png }) => ({ tag, image: { ...pngInfo(png), png } }));
    if (values.length === 0) return this.chain;
    return this.writeRecord(encodeSummaryEvent(wallTime, step, values));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain.catch(() => {});
    await this.fh.sync().catch(() => {}); // durability at the end; per-record fsync would be wasteful
    await this.fh.close();
  }

  private writeRecord(data: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`event file ${this.path} is closed`));
    const record = frameRecord(data);
    const next = this.chain.then(async () => {
      await this.fh.write(record);
    });
    // A failed write must not poison later writes' chain; the caller of that write gets the error.
    this.chain = next.catch(() => {});
    return next;
  }
}

import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c } from '../lib/monitor/crc32c';
import { decodeEvent } from '../lib/monitor/event-proto';
import { readRecords } from '../lib/monitor/tfrecord';
import { createRunTracker } from '../lib/monitor/tracker';
import { pythonHas, runPython } from './monitor-python';

const HAVE_TB = pythonHas('tensorboard.backend.event_processing.event_accumulator');

// Reads the event dir with TensorBoard's own loader and prints what it found as JSON.
const READER = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'images': 0})
acc.Reload()
tags = acc.Tags()
out = {'scalars': {}, 'images': {}}
for t in tags['scalars']:
    out['scalars'][t] = [[e.step, e.value] for e in acc.Scalars(t)]
for t in tags['images']:
    out['images'][t] = [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)]
print(json.dumps(out))
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'monitor-tb-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeSampleRun(logDir: string): Promise<{ png: Buffer; eventFile: string }> {
  const png = await sharp({
    create: { width: 48, height: 32, channels: 3, background: { r: 200, g: 20, b: 20 } },
  })
    .png()
    .toBuffer();
  const tracker = await createRunTracker({ logDir, runName: 'test', experiment: 'test', mlflowUri: null });
  for (let step = 1; step <= 3; step++) {
    await tracker.logScalars(step, { 'loss/mse': 1 / step, 'loss/ssim': 0.5 / step, lr: 1e-3 });
  }
  await tracker.logImages(3, [{ tag: 'reconstruction/sample_0', png }]);
  await tracker.close('FINISHED');
  return { png, eventFile: tracker.eventFile };
}

describe('TensorBoard event files', () => {
  it('crc32c matches the standard check value', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('writes framed Event records: file_version first, then summaries', async () => {
    const logDir = join(dir, 'framing');
    const { eventFile } = await writeSampleRun(logDir);
    expect((await readdir(logDir))[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    const events = readRecords(await readFile(eventFile)).map(decodeEvent);
    expect(events[0].file_version).toBe('brain.Event:2');
    expect(events).toHaveLength(1 + 3 + 1);
    expect(events[1].step).toBe(1);
  });

  it.skipIf(!HAVE_TB)(
    'is read back by the real TensorBoard EventAccumulator (pip install tensorboard==2.21.0)',
    async () => {
      const logDir = join(dir, 'real');
      await writeSampleRun(logDir);
      const out = JSON.parse(runPython(READER, [logDir])) as {
        scalars: Record<string, [number, number][]>;
        images: Record<string, [number, number, number, number][]>;
      };
      expect(Object.keys(out.scalars).sort()).toEqual(['loss/mse', 'loss/ssim', 'lr']);
      expect(out.scalars['loss/mse'].map(([s]) => s)).toEqual([1, 2, 3]);
      for (const [s, v] of out.scalars['loss/mse']) expect(v).toBeCloseTo(1 / s, 6);
      expect(out.scalars.lr[0][1]).toBeCloseTo(1e-3, 8); // simple_value is float32
      expect(out.images['reconstruction/sample_0']).toEqual([[3, 48, 32, expect.any(Number)]]);
      expect(out.images['reconstruction/sample_0'][0][3]).toBeGreaterThan(50);
    },
  );

  it.skipIf(!HAVE_TB)(
    "after a resume, the steps logged again replace the crashed attempt's in TensorBoard (no double points)",
    async () => {
      const logDir = join(dir, 'resumed');
      // Attempt 1 logs epochs 1-4 and crashes; its newest checkpoint is epoch 2.
      const first = await createRunTracker({ logDir, runName: 't', experiment: 't', mlflowUri: null });
      for (let step = 1; step <= 4; step++) await first.logScalars(step, { 'loss/total': 10 + step });
      await first.close('FAILED');
      // Attempt 2 resumes after epoch 2 and logs epochs 3-5 again.
      const second = await createRunTracker({ logDir, runName: 't', experiment: 't', mlflowUri: null });
      await second.markResumed(3);
      for (let step = 3; step <= 5; step++) await second.logScalars(step, { 'loss/total': 20 + step });
      await second.close('FINISHED');
      const events = readRecords(await readFile(second.eventFile)).map(decodeEvent);
      expect(events[1]).toMatchObject({ step: 3, session_log: { status: 1 } });

      const out = JSON.parse(runPython(READER, [logDir])) as { scalars: Record<string, [number, number][]> };
      expect(out.scalars['loss/total']).toEqual([
        [1, 11],
        [2, 12],
        [3, 23],
        [4, 24],
        [5, 25],
      ]);
    },
  );
});

if (!HAVE_TB) {
  console.warn(
    'monitor-tensorboard: python tensorboard not importable; real-reader test skipped (pip install tensorboard==2.21.0)',
  );
}

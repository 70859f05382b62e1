import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLogger, createLogger } from '../lib/monitor/logger';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'monitor-logger-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, destination: { write: (s: string) => void lines.push(JSON.parse(s)) } };
}

describe('createLogger', () => {
  it('writes one JSON line per event with bindings and child bindings', () => {
    const { lines, destination } = capture();
    const log = createLogger({ runId: 'r1', category: 'bottle' }, { destination });
    log.child({ step: 'train', attempt: 2 }).info({ epoch: 3 }, 'epoch done');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      runId: 'r1',
      category: 'bottle',
      step: 'train',
      attempt: 2,
      epoch: 3,
      msg: 'epoch done',
    });
    expect(typeof lines[0].time).toBe('string'); // ISO time: readable in files without pino-pretty
  });

  it('takes the level from LOG_LEVEL, and opts.level over it', () => {
    const prev = process.env.LOG_LEVEL;
    process.env.LOG_LEVEL = 'warn';
    try {
      const a = capture();
      createLogger({}, { destination: a.destination }).info('hidden');
      expect(a.lines).toHaveLength(0);
      const b = capture();
      createLogger({}, { destination: b.destination, level: 'debug' }).debug('shown');
      expect(b.lines).toHaveLength(1);
    } finally {
      if (prev === undefined) delete process.env.LOG_LEVEL;
      else process.env.LOG_LEVEL = prev;
    }
  });

  it('serialises errors with their cause chain', () => {
    const { lines, destination } = capture();
    const root = new Error('ENOSPC: no space left on device');
    createLogger({}, { destination }).error(
      { err: new Error('checkpoint write failed', { cause: root }) },
      'failed',
    );
    const err = lines[0].err as { message: string; stack: string; type: string };
    expect(err.type).toBe('Error');
    expect(err.message).toContain('checkpoint write failed');
    expect(err.message).toContain('ENOSPC');
    expect(err.stack).toContain('caused by');
  });

  it('also appends JSON lines to a file (per-attempt log)', async () => {
    const file = join(tmp, 'run', 'bottle', 'train', 'attempt-1.log.jsonl');
    const { lines, destination } = capture();
    const log = createLogger({ attempt: 1 }, { destination, file });
    log.info('one');
    log.debug('filtered by level');
    log.warn('two');
    closeLogger(log);
    const again = createLogger({ attempt: 2 }, { destination, file });
    again.info('three');
    closeLogger(again);
    const fileLines = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(fileLines.map((l) => [l.attempt, l.msg])).toEqual([
      [1, 'one'],
      [1, 'two'],
      [2, 'three'],
    ]);
    expect(lines).toHaveLength(3);
  });
});

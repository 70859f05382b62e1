/**
 * Terminal output of the pipeline CLI: one live progress bar per category (TTY) or a line per
 * change (logs/CI), and the final summary table.
 */
import cliProgress from 'cli-progress';
import { displayPath } from '../../lib/config/paths';
import type { CategoryOutcome } from '../../lib/pipeline/outcome';
import type { ProgressDetails } from '../../lib/steps/contracts';
import { isRemoteStoreUrl } from '../../lib/store/open';
import type { CategoryLiveProgress, RunProgress } from '../../temporal/progress';
import type { PipelineSummary } from '../../workflows/definitions';

interface CategoryLine {
  /** 0..1 of the category's steps, with training epochs counted as a fraction of the train step. */
  fraction: number;
  text: string;
}

export function describeCategory(status: string, live: CategoryLiveProgress | undefined): CategoryLine {
  if (!live) return { fraction: status === 'completed' ? 1 : 0, text: status };
  const states = Object.values(live.steps);
  const done = states.filter((s) => s === 'completed' || s === 'reused').length;
  let partial = 0;
  const parts: string[] = [];
  for (const act of live.activities) {
    const d: ProgressDetails | undefined = act.details;
    if (d?.epoch !== undefined && d.totalEpochs) partial = Math.max(partial, d.epoch / d.totalEpochs);
    const bits = [act.activity];
    if (d?.epoch !== undefined) bits.push(`epoch ${d.epoch}/${d.totalEpochs ?? '?'}`);
    if (d?.batch !== undefined && d.totalBatches) bits.push(`batch ${d.batch}/${d.totalBatches}`);
    if (d?.loss !== undefined) bits.push(`loss ${d.loss.toPrecision(4)}`);
    if (d?.etaSec !== undefined) bits.push(`ETA ${formatSeconds(d.etaSec)}`);
    if (act.attempt > 1)
      bits.push(
        `attempt ${act.attempt}${act.lastFailure ? ` (last: ${truncate(act.lastFailure, 60)})` : ''}`,
      );
    parts.push(bits.join(' '));
  }
  const total = Math.max(1, states.length);
  const text =
    live.status === 'running' ? parts.join(' | ') || live.runningSteps.join(', ') || 'waiting' : live.status;
  return {
    fraction: Math.min(1, (done + partial) / total),
    text: live.failure ? `${text}: ${live.failure.step} failed` : text,
  };
}

export interface ProgressView {
  update(progress: RunProgress): void;
  stop(): void;
}

/** Bars on a TTY; otherwise one line whenever a category's text changes. */
export function createProgressView(stream: NodeJS.WriteStream = process.stderr): ProgressView {
  if (!stream.isTTY) {
    const last = new Map<string, string>();
    return {
      update(progress) {
        for (const [name, status] of Object.entries(progress.pipeline.categories)) {
          const line = describeCategory(status, progress.categories[name]);
          const text = `${name}: ${status === 'running' ? line.text : status}`;
          if (last.get(name) !== text) {
            last.set(name, text);
            stream.write(`${new Date().toISOString()} ${text}\n`);
          }
        }
      },
      stop() {},
    };
  }
  const multibar = new cliProgress.MultiBar(
    {
      stream,
      format: ' {category} [{bar}] {percentage}% {status}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  let width = 0;
  return {
    update(progress) {
      const names = Object.keys(progress.pipeline.categories);
      width = Math.max(width, ...names.map((n) => n.length));
      for (const name of names) {
        const status = progress.pipeline.categories[name];
        const line = describeCategory(status, progress.categories[name]);
        const payload = {
          category: name.padEnd(width),
          status: truncate(status === 'running' ? line.text : status, 80),
        };
        const value = Math.round(line.fraction * 1000);
        const bar = bars.get(name);
        if (bar) bar.update(value, payload);
        else bars.set(name, multibar.create(1000, value, payload));
      }
    },
    stop() {
      multibar.stop();
    },
  };
}

/** The final table: one row per category, plus where reports and the summary are. */
export function formatSummary(summary: PipelineSummary): string {
  const rows = summary.categories.map((c) => [
    c.category,
    c.status,
    stepsOf(c),
    c.failure?.step ?? '',
    reasonOf(c),
    reportOf(c, summary.runDir),
  ]);
  const header = ['category', 'status', 'steps done', 'failed step', 'reason', 'report'];
  const widths = header.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((r) => r[i].length))));
  const fmt = (r: string[]) =>
    r
      .map((cell, i) => truncate(cell, widths[i]).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const lines = [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)];
  const ok = summary.categories.filter((c) => c.status === 'completed').length;
  lines.push(
    '',
    `${ok}/${summary.categories.length} categories completed. Run dir: ${displayPath(summary.runDir)}`,
  );
  for (const out of summary.summary?.outputs ?? [])
    lines.push(`summary: ${displayPath(`${summary.runDir}/${out.path}`)}`);
  if (summary.summaryError) lines.push(`summary step failed: ${summary.summaryError}`);
  if (isRemoteStoreUrl(summary.runDir))
    lines.push(
      `The run is in object storage. Fetch a folder to read it here: npm run store -- fetch ${summary.runDir}/summary ./summary`,
      `Serve its models: npm run serve -- --models ${summary.runDir}`,
    );
  return lines.join('\n');
}

function stepsOf(c: CategoryOutcome): string {
  const states = Object.values(c.steps);
  const reused = states.filter((s) => s === 'reused').length;
  const done = states.filter((s) => s === 'completed').length + reused;
  return `${done}/${states.length}${reused ? ` (${reused} reused)` : ''}`;
}

function reasonOf(c: CategoryOutcome): string {
  if (!c.failure) return '';
  return `${c.failure.code ? `[${c.failure.code}] ` : ''}${c.failure.message.split('\n')[0]}`;
}

function reportOf(c: CategoryOutcome, runDir: string): string {
  const report = Object.values(c.results).find((r) => r.activity === 'report');
  const main =
    report?.outputs.find((o) => o.path.endsWith('.html')) ??
    report?.outputs.find((o) => o.path.endsWith('.md')) ??
    report?.outputs[0];
  return main ? displayPath(`${runDir}/${main.path}`) : '';
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(0, n - 1))}…`;
}

function formatSeconds(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

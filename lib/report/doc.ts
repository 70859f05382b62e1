import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';

/**
 * A tiny document model so that report.md and report.html are rendered from the same blocks and
 * cannot drift apart. Images are paths relative to the report folder: Markdown links them, HTML
 * inlines them as data URIs (the HTML file is self-contained and can be mailed around).
 */
export type Block =
  | { kind: 'h1'; text: string }
  | { kind: 'h2'; text: string }
  | { kind: 'p'; text: string }
  | { kind: 'table'; header: string[]; rows: string[][] }
  | { kind: 'images'; images: { src: string; caption: string }[] };

const mdCell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function renderMarkdown(blocks: Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    if (b.kind === 'h1') out.push(`# ${b.text}`);
    else if (b.kind === 'h2') out.push(`## ${b.text}`);
    else if (b.kind === 'p') out.push(b.text);
    else if (b.kind === 'table') {
      out.push(
        [
          `| ${b.header.map(mdCell).join(' | ')} |`,
          `| ${b.header.map(() => '---').join(' | ')} |`,
          ...b.rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`),
        ].join('\n'),
      );
    } else if (b.kind === 'images')
      out.push(b.images.map((i) => `![${i.caption}](${i.src})  \n*${i.caption}*`).join('\n\n'));
  }
  return `${out.join('\n\n')}\n`;
}

const esc = (s: string) =>
  s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

/** Markdown-ish inline markup used in texts: **bold** and `code` only. */
const inline = (s: string) =>
  esc(s)
    .replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>')
    .replace(/`(.+?)`/g, '<code>$1</code>');

const MIME: Record<string, string> = { '.png': 'image/png', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg' };

export async function renderHtml(blocks: Block[], title: string, baseDir: string): Promise<string> {
  const body: string[] = [];
  for (const b of blocks) {
    if (b.kind === 'h1') body.push(`<h1>${inline(b.text)}</h1>`);
    else if (b.kind === 'h2') body.push(`<h2>${inline(b.text)}</h2>`);
    else if (b.kind === 'p') body.push(`<p>${inline(b.text)}</p>`);
    else if (b.kind === 'table') {
      body.push(
        `<table><thead><tr>${b.header.map((h) => `<th>${inline(h)}</th>`).join('')}</tr></thead><tbody>${b.rows
          .map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join('')}</tr>`)
          .join('')}</tbody></table>`,
      );
    } else if (b.kind === 'images') {
      const figs = await Promise.all(
        b.images.map(async (i) => {
          const data = await readFile(join(baseDir, i.src));
          const uri = `data:${MIME[extname(i.src)] ?? 'application/octet-stream'};base64,${data.toString('base64')}`;
          return `<figure><img src="${uri}" alt="${esc(i.caption)}"><figcaption>${inline(i.caption)}</figcaption></figure>`;
        }),
      );
      body.push(`<div class="figs">${figs.join('')}</div>`);
    }
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}code{background:#f4f4f4;padding:0 3px}
</style></head><body>
${body.join('\n')}
</body></html>
`;
}

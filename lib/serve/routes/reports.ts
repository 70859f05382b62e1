/**
 * The loaded runs' reports: one static mount per run folder (report-like files only, never weights)
 * and an index page at /reports/.
 */
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ServeContext } from './context';

/** HTML files of a run folder (reports), relative paths, bounded depth. */
async function findReports(runDir: string, depth = 3): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, left: number) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isFile() && e.name.endsWith('.html')) out.push(relative(runDir, p));
      else if (e.isDirectory() && left > 0 && e.name !== 'package') await walk(p, left - 1);
    }
  };
  await walk(runDir, depth);
  return out.sort();
}

const REPORT_EXTENSIONS = /\.(html|css|js|json|png|svg|jpg|jpeg|webp|csv|md|txt)$/i;

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

export async function reportsPlugin(app: FastifyInstance, ctx: ServeContext): Promise<void> {
  const runs = new Map<string, string>();
  for (const m of ctx.served) {
    if (m.runDir) runs.set(`${m.pkg.metadata.pipeline}/${m.pkg.metadata.runId}`, m.runDir);
  }
  for (const [key, dir] of runs) {
    // Its file routes are left out of the OpenAPI document (@fastify/static's schemaHide).
    await app.register(fastifyStatic, {
      root: dir,
      prefix: `/reports/${key}/`,
      decorateReply: false,
      index: false,
      dotfiles: 'deny',
      allowedPath: (p) => REPORT_EXTENSIONS.test(p) && !p.split('/').includes('package'),
    });
  }
  app.get(
    '/reports',
    {
      schema: {
        summary: 'Redirects to /reports/',
        response: {
          302: { description: 'Redirect to /reports/', content: { 'text/plain': { schema: z.string() } } },
        },
      },
    },
    async (_req, reply) => reply.redirect('/reports/'),
  );
  app.get(
    '/reports/',
    {
      schema: {
        summary: "Links to the loaded runs' HTML reports (served below /reports/<pipeline>/<run-id>/)",
        response: {
          200: { description: 'HTML page', content: { 'text/html': { schema: z.string() } } },
        },
      },
    },
    async (_req, reply) => {
      const items: string[] = [];
      for (const [key, dir] of runs) {
        for (const f of await findReports(dir)) {
          const href = `/reports/${key}/${f.split('/').map(encodeURIComponent).join('/')}`;
          items.push(`<li><a href="${escapeHtml(href)}">${escapeHtml(`${key}/${f}`)}</a></li>`);
        }
      }
      const list = items.length
        ? `<ul>${items.join('')}</ul>`
        : '<p>No report.html files in the loaded runs yet.</p>';
      return reply
        .type('text/html; charset=utf-8')
        .send(
          `<!doctype html><meta charset="utf-8"><title>Run reports</title><link rel="stylesheet" href="/style.css"><main class="reports"><h1>Run reports</h1>${list}<p><a href="/">Back to the predictor</a></p></main>`,
        );
    },
  );
}

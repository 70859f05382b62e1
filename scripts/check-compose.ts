/**
 * `node --import tsx scripts/check-compose.ts deploy/compose.yaml`: checks a Compose file without
 * Docker. Parses it (YAML 1.2 with merge keys, duplicate keys rejected), then checks what `docker
 * compose config` would reject or what would break at run time: every service has an image or a
 * build, named volumes/configs are declared, build contexts and Dockerfiles exist, `depends_on`
 * names services, and the entry files of node commands exist in the repository.
 * Prints one line per problem; exit 1 when there is any.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function checkCompose(file: string): string[] {
  const problems: string[] = [];
  const doc = parseDocument(readFileSync(file, 'utf8'), {
    merge: true,
    uniqueKeys: true,
    prettyErrors: true,
  });
  for (const e of doc.errors) problems.push(`${file}: YAML: ${e.message}`);
  if (doc.errors.length) return problems;
  const root = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  if (!isObj(root) || !isObj(root.services)) return [`${file}: no 'services' mapping`];
  const baseDir = dirname(resolve(file));
  const services = root.services as Obj;
  const volumes = isObj(root.volumes) ? Object.keys(root.volumes) : [];
  const configs = isObj(root.configs) ? Object.keys(root.configs) : [];
  for (const [name, svc] of Object.entries(services)) {
    const at = `${file}: services.${name}`;
    if (!isObj(svc)) {
      problems.push(`${at}: not a mapping`);
      continue;
    }
    if (!svc.image && !svc.build) problems.push(`${at}: needs 'image' or 'build'`);
    if (isObj(svc.build)) {
      const ctx = resolve(baseDir, String(svc.build.context ?? '.'));
      if (!existsSync(ctx)) problems.push(`${at}.build.context: ${ctx} does not exist`);
      const df = join(ctx, String(svc.build.dockerfile ?? 'Dockerfile'));
      if (!existsSync(df)) problems.push(`${at}.build.dockerfile: ${df} does not exist`);
      else if (
        svc.build.target &&
        !new RegExp(`^FROM\\s+\\S+\\s+AS\\s+${svc.build.target}\\s*$`, 'im').test(readFileSync(df, 'utf8'))
      )
        problems.push(`${at}.build.target: no stage '${svc.build.target}' in ${df}`);
    }
    for (const v of Array.isArray(svc.volumes) ? svc.volumes : []) {
      const source = typeof v === 'string' ? v.split(':')[0] : isObj(v) ? String(v.source ?? '') : '';
      const named = source && !source.startsWith('.') && !source.startsWith('/') && !source.startsWith('~');
      if (named && !volumes.includes(source))
        problems.push(`${at}.volumes: '${source}' is not declared under volumes`);
    }
    for (const c of Array.isArray(svc.configs) ? svc.configs : []) {
      const source = typeof c === 'string' ? c : isObj(c) ? String(c.source ?? '') : '';
      if (!configs.includes(source))
        problems.push(`${at}.configs: '${source}' is not declared under configs`);
    }
    const deps = Array.isArray(svc.depends_on)
      ? svc.depends_on
      : isObj(svc.depends_on)
        ? Object.keys(svc.depends_on)
        : [];
    for (const d of deps) if (!(String(d) in services)) problems.push(`${at}.depends_on: no service '${d}'`);
    // Commands of our image run `node --import tsx <entry>`: the entry must exist in the repo.
    if (isObj(svc.build) && Array.isArray(svc.command) && typeof svc.command[0] === 'string') {
      const entry = String(svc.command[0]);
      const ctx = resolve(baseDir, String(svc.build.context ?? '.'));
      if (/\.ts$/.test(entry) && !existsSync(join(ctx, entry)))
        problems.push(`${at}.command: ${entry} not in ${ctx}`);
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('check-compose.ts')) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: check-compose.ts <compose.yaml>...\n');
    process.exit(2);
  }
  const problems = files.flatMap(checkCompose);
  for (const p of problems) process.stderr.write(`${p}\n`);
  if (problems.length === 0) process.stdout.write(`compose: ${files.join(', ')} ok\n`);
  process.exit(problems.length ? 1 : 0);
}

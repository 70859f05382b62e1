/**
 * `npm run store -- <command>`: the artifact store from the command line (settings from the AWS_*
 * environment variables; see docs/DEPLOY.md).
 *   publish <dir> <url>   upload a folder: every file, then _manifest.json (sha256 of each) last
 *   fetch <url> <dir>     download a published folder, verifying each file; replaces <dir> whole
 *   ls <url> [prefix]     list objects (key, bytes)
 *   mb <url>              create the bucket of an s3:// URL (nothing to do when it exists)
 * <url>: s3://bucket/prefix or a local folder. Exit codes: 0 ok, 2 the user's to fix (missing
 * object or bucket, credentials, checksum mismatch, bad URL), 1 anything else (e.g. unreachable).
 */
import { Command } from 'commander';
import {
  fetchDir,
  isRemoteStoreUrl,
  isStoreError,
  openStore,
  publishDir,
  type S3Store,
} from '../lib/store/index';
import { describeError, isUserError, UserError } from '../lib/util/errors';

const out = (line: string) => process.stdout.write(`${line}\n`);

const program = new Command('store').description(
  'Publish, fetch and list artifacts in a store (s3:// or a folder)',
);
program
  .command('publish <dir> <url>')
  .description('upload every file of <dir> under <url>, then its manifest (last)')
  .action(async (dir: string, url: string) => {
    const store = openStore(url);
    try {
      const m = await publishDir(store, dir, '');
      const bytes = m.files.reduce((a, f) => a + f.bytes, 0);
      out(`published ${m.files.length} files (${bytes} bytes) to ${store.url}`);
    } finally {
      await store.close();
    }
  });
program
  .command('fetch <url> <dir>')
  .description('download the folder published at <url> into <dir>, verifying every file')
  .action(async (url: string, dir: string) => {
    const store = openStore(url);
    try {
      const m = await fetchDir(store, '', dir);
      out(`fetched ${m.files.length} files from ${store.url} into ${dir}`);
    } finally {
      await store.close();
    }
  });
program
  .command('mb <url>')
  .description('create the bucket of an s3:// URL (nothing to do when it exists)')
  .action(async (url: string) => {
    if (!isRemoteStoreUrl(url)) throw new UserError('INVALID_ARGUMENT', `mb: ${url} is not an s3:// URL`);
    const store = openStore(url) as S3Store;
    try {
      const { created } = await store.createBucket();
      out(`${created ? 'created' : 'exists:'} bucket ${store.bucket}`);
    } finally {
      await store.close();
    }
  });
program
  .command('ls <url> [prefix]')
  .description('list the objects under <url> (optionally only keys starting with [prefix])')
  .action(async (url: string, prefix?: string) => {
    const store = openStore(url);
    try {
      for (const o of await store.list(prefix ?? '')) out(`${String(o.bytes).padStart(12)}  ${o.key}`);
    } finally {
      await store.close();
    }
  });

program.parseAsync().catch((err: unknown) => {
  if (isUserError(err)) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(2);
  }
  if (isStoreError(err)) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(err.retryable ? 1 : 2);
  }
  process.stderr.write(`error: ${describeError(err)}\n`);
  process.exit(1);
});

import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { fetchLocalFiles, sendLocalFiles } from './backup/bucket.js';
import { pruneDeleted } from './backup/prune.js';
import { backupPlace, readManifest, writeManifest } from './backup/place.js';
import { snapshotSqliteIndex } from './backup/snapshot.js';
import { BACKUP_USAGE } from './cli-usage.js';
import { loadConfig, type Config } from './config.js';
import { formatBytes } from './ingest/spool.js';
import { createLogger } from './logger.js';
import { backendOf, type Backend } from './migrate/backends.js';
import { parallelOption, runCopyCommand, UsageError } from './migrate/command.js';
import { opening, openSource, openTarget, Refused, type End } from './migrate/ends.js';
import { transferReport } from './migrate/report.js';
import { transfer } from './migrate/transfer.js';

/** Left in the restored store's data folder while a restore runs: a re-run after a kill may go on filling it. */
const RESTORING = 'restore-in-progress';

type Command = { place: string; parallel: number };

function parseOptions(command: 'backup' | 'restore', args: string[]): Command {
  const flag = command === 'backup' ? 'to' : 'from';
  let values;
  try {
    ({ values } = parseArgs({ args, options: { [flag]: { type: 'string' }, parallel: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new UsageError(`${command}: ${(e as Error).message}`);
  }
  const place = values[flag];
  if (typeof place !== 'string' || place === '') throw new UsageError(`${command} needs --${flag} <folder | env file>`);
  return { place, parallel: parallelOption(values.parallel as string | undefined) };
}

/** Runs `backup` or `restore`; exit code 0 when every instance is in the target and verified, 1 when not, 2 on bad usage. */
export function runBackupCommand(command: 'backup' | 'restore', args: string[]): Promise<void> {
  return runCopyCommand(BACKUP_USAGE, () => parseOptions(command, args), async (options, ends) => {
    const log = createLogger('error');
    if (command === 'backup') await backup(options, loadConfig(), await backupPlace(options.place), log, ends);
    else await restore(options, await backupPlace(options.place), loadConfig(), log, ends);
  });
}

async function backup(options: Command, sourceConfig: Config, backupConfig: Config, log: Logger, ends: End[]) {
  const from = backendOf(sourceConfig);
  const to = backendOf(backupConfig);
  if (from.indexPlace === to.indexPlace || from.objectsPlace === to.objectsPlace) {
    throw new Refused(`${options.place} is the store itself (${from.objects} + ${from.index}): a backup goes to another disk, folder or bucket.`);
  }
  // A bucket backup whose local folder was lost takes its index back from the bucket, so that it stays incremental.
  if (backupConfig.s3) await opening('the backup', () => fetchLocalFiles({ ...backupConfig, s3: backupConfig.s3! }, log, { create: true }));
  const target = await opening('the backup', () => openTarget(backupConfig, to, log, undefined, true));
  ends.push(target);
  // SQLite: one moment's index, while the server goes on. Postgres: read as it is (pg_dump for a point in time: README).
  const snapshot = sourceConfig.databaseUrl ? undefined : () => snapshotSqliteIndex(sourceConfig.storageDir, path.join(target.spoolDir, 'snapshot'));
  const source = await opening('the store to back up', () => openSource(sourceConfig, from, log, snapshot));
  ends.push(source);

  const out = process.stdout;
  out.write(`Backing up\n  from  ${from.objects} + ${from.index}${snapshot ? ' (a snapshot of it taken now)' : ''}\n  to    ${to.objects} + ${to.index}\n`);
  const done = await transfer(source, target, { command: 'backup', parallel: options.parallel, replace: true, log });
  const complete = done.counts.failed === 0 && !done.counts.stopped;
  let pruned = 0;
  if (!done.counts.stopped) pruned = await pruneDeleted(source.catalog, target);
  if (complete) await writeManifest(backupConfig, from, done.counts.total);
  if (backupConfig.s3 && !done.counts.stopped) await sendLocalFiles(backupConfig.storageDir, target.store, target.spoolDir);
  out.write(
    transferReport(done, backupConfig, {
      failed: 'the backup lacks them',
      done: [
        `  The backup holds ${done.counts.total.instances} instance(s), ${formatBytes(done.counts.total.bytes)}${pruned ? `; ${pruned} deleted from the store since were removed from it` : ''}.`,
        `  Restore it into an empty store with: npm run cli -- restore --from ${options.place}`,
      ],
    }),
  );
  process.exitCode = complete ? 0 : 1;
}

async function restore(options: Command, backupConfig: Config, targetConfig: Config, log: Logger, ends: End[]) {
  const from = backendOf(backupConfig);
  const to = backendOf(targetConfig);
  const fetched = backupConfig.s3 ? await opening('the backup', () => fetchLocalFiles({ ...backupConfig, s3: backupConfig.s3! }, log, { create: false })) : [];
  if (!(await fs.stat(path.join(backupConfig.storageDir, 'index.sqlite')).catch(() => undefined))) {
    throw new Refused(`${options.place} holds no backup (no index.sqlite in ${backupConfig.storageDir}${backupConfig.s3 ? ' nor under pacs-backup/ in its bucket' : ''}): give the folder or env file that \`backup --to\` wrote.`);
  }
  if (from.indexPlace === to.indexPlace) throw new Refused(`The backup is this environment's own store (${to.index}): set PACS_STORAGE_DIR to the empty folder to restore into.`);
  const manifest = await readManifest(backupConfig);
  const source = await opening('the backup', () => openSource(backupConfig, from, log));
  ends.push(source);
  const target = await opening('the store to restore into', () => openTarget(targetConfig, to, log, undefined));
  ends.push(target);
  const marker = path.join(targetConfig.storageDir, RESTORING);
  const resuming = await fs.readFile(marker, 'utf8').then((text) => text.trim() === backupConfig.storageDir, () => false);
  if (!resuming) await refuseNonEmpty(target, to);
  await fs.writeFile(marker, `${backupConfig.storageDir}\n`);

  const out = process.stdout;
  out.write(`Restoring\n  from  ${from.objects} + ${from.index}\n  to    ${to.objects} + ${to.index}\n`);
  out.write(manifest ? `The backup was last completed at ${manifest.completedAt} (${manifest.instances} instance(s)).\n` : 'The backup never completed a run: restoring the instances it holds.\n');
  if (fetched.length) out.write(`Taken from the bucket, as ${backupConfig.storageDir} lacked them: ${fetched.join(', ')}.\n`);
  if (resuming) out.write('Going on with the restore a previous run began (it skips what is already restored).\n');
  const done = await transfer(source, target, { command: 'restore', parallel: options.parallel, log });
  const complete = done.counts.failed === 0 && !done.counts.stopped;
  if (complete) await fs.rm(marker, { force: true });
  out.write(
    transferReport(done, targetConfig, {
      failed: 'they are not restored',
      done: ['  Start the server with these settings: it serves the store as it was at the backup.', '  To read every object back: npm run cli -- verify'],
    }),
  );
  process.exitCode = complete ? 0 : 1;
}

/** A restore fills an empty store only, so that nothing already there is mixed with, or replaced by, the backup. */
async function refuseNonEmpty(target: End, to: Backend) {
  const { instances } = await target.catalog.objectTotals();
  let objects = false;
  for await (const _key of target.store.list('studies/')) {
    objects = true;
    break;
  }
  if (instances === 0 && !objects) return;
  const holds = instances > 0 ? `${to.index} indexes ${instances} instance(s)` : `${to.objects} holds objects`;
  throw new Refused(
    `Not restoring: the target is not empty (${holds}). A restore only fills an empty store. Point PACS_STORAGE_DIR ` +
      '(and PACS_S3_BUCKET, PACS_DATABASE_URL if set) at an empty folder, bucket and database, or move what is there away first.',
  );
}

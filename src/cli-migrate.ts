import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { MIGRATE_USAGE } from './cli-usage.js';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { backendOf } from './migrate/backends.js';
import { parallelOption, runCopyCommand, UsageError } from './migrate/command.js';
import { loadFileConfig, opening, openSource, openTarget, Refused, type End, type TargetEnd } from './migrate/ends.js';
import { transferReport } from './migrate/report.js';
import { transfer } from './migrate/transfer.js';

/** Runs `migrate …`; sets the exit code: 0 when every instance is in the target and verified, 1 when not, 2 on bad usage. */
export function runMigrate(args: string[]): Promise<void> {
  return runCopyCommand(MIGRATE_USAGE, () => parseOptions(args), async (options, ends) => {
    const log = createLogger('error');
    const fileConfig = await loadFileConfig(options.envFile);
    const sourceConfig = options.direction === 'to' ? loadConfig() : fileConfig;
    const targetConfig = options.direction === 'to' ? fileConfig : loadConfig();
    const targetNamed = options.direction === 'to' ? options.envFile : 'the environment';
    const from = backendOf(sourceConfig);
    const to = backendOf(targetConfig);
    if (from.indexPlace === to.indexPlace) {
      throw new Refused(
        `The source and the target are the same index (${from.index}): give the target its own PACS_DATABASE_URL, or for SQLite its own PACS_STORAGE_DIR, in ${targetNamed}.`,
      );
    }
    const source = await opening('the source', () => openSource(sourceConfig, from, log));
    ends.push(source);
    const inPlace = from.objectsPlace === to.objectsPlace;
    const target = await opening('the target', () => openTarget(targetConfig, to, log, inPlace ? source.store : undefined));
    ends.push(target);
    await migrate(source, target, options, log, inPlace, targetNamed);
  });
}

async function migrate(source: End, target: TargetEnd, options: Options, log: Logger, inPlace: boolean, targetNamed: string) {
  const out = process.stdout;
  out.write(`Copying the store\n  from  ${source.backend.objects} + ${source.backend.index}\n  to    ${target.backend.objects} + ${target.backend.index}\n`);
  if (inPlace) out.write('        (the same object store: objects are read and verified where they are, only the index is built)\n');
  out.write('The source is only read; its server may keep running. Instances it stores meanwhile are caught by running this again.\n');
  const done = await transfer(source, target, { command: 'migrate', parallel: options.parallel, log });
  out.write(
    transferReport(done, target.config, {
      failed: 'do not switch over yet',
      done: [
        '  1. Stop the server (or stop sending to it) and run this command once more: it copies only what was stored meanwhile.',
        `  2. Start the server with the target's settings (those in ${targetNamed}) in place of the source's.`,
        "  3. To read every object back from the target: npm run cli -- verify, with the target's settings.",
        '  The source is unchanged: keep it until the target has served for a while.',
      ],
    }),
  );
  process.exitCode = done.counts.failed === 0 && !done.counts.stopped ? 0 : 1;
}

/** `to`: from this environment to the file's store (the usual way); `from`: from the file's store to this environment's. */
type Options = { direction: 'to' | 'from'; envFile: string; parallel: number };

function parseOptions(args: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { 'to-env': { type: 'string' }, 'from-env': { type: 'string' }, parallel: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new UsageError(`migrate: ${(e as Error).message}`);
  }
  const toEnv = values['to-env'];
  const fromEnv = values['from-env'];
  if (toEnv && fromEnv) throw new UsageError('migrate takes --to-env or --from-env, not both: the other end is the environment');
  if (!toEnv && !fromEnv) throw new UsageError('migrate needs --to-env <file>: the target store\'s settings, one NAME=value a line');
  const parallel = parallelOption(values.parallel);
  return toEnv ? { direction: 'to', envFile: toEnv, parallel } : { direction: 'from', envFile: fromEnv!, parallel };
}

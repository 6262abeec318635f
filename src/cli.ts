import { CatalogUnavailable } from './catalog/catalog.js';
import { USAGE } from './cli-usage.js';
import { ConfigError } from './config.js';
import { DiskFull } from './errors.js';

// Each command's code is loaded when it runs: a command that does little starts without the S3 client, Postgres,
// sharp and the rest of the server.
async function main(argv: string[]) {
  const [command, ...args] = argv;
  try {
    if (command === 'import' && args[0]) return await (await import('./cli-store.js')).importFolder(args[0]);
    if (command === 'verify') return await (await import('./cli-store.js')).verify();
    if (command === 'migrate') return await (await import('./cli-migrate.js')).runMigrate(args);
    if (command === 'backup' || command === 'restore') return await (await import('./cli-backup.js')).runBackupCommand(command, args);
    if (command === 'keys' || command === 'tokens' || command === 'signing-key') return await (await import('./cli-access.js')).runAccessCommand(command, args);
    if (command === 'users') return await (await import('./cli-users.js')).runUsersCommand(args);
    if (command === 'aes') return await (await import('./cli-application-entities.js')).runAesCommand(args);
  } catch (e) {
    // A bad setting, an index database out of reach or a full disk: said in a line, not a stack trace.
    const full = DiskFull.of(e);
    if (!(e instanceof ConfigError || e instanceof CatalogUnavailable || full)) throw e;
    console.error(full ? `${full.message}: nothing of the last batch was kept; free space and run the command again` : (e as Error).message);
    process.exitCode = e instanceof ConfigError ? 2 : 1;
    return;
  }
  if (command === 'help' || command === '--help' || command === '-h') return console.log(USAGE);
  console.error(USAGE);
  process.exitCode = 2;
}

await main(process.argv.slice(2));

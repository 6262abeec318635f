import type { Logger } from 'pino';
import type { AccessRecords } from '../auth/records.js';
import type { UserRecords } from '../auth/user-records.js';
import type { Config } from '../config.js';
import type { Catalog } from './catalog.js';

/** The index with the access records and staff accounts kept beside it, in the same database. */
export type IndexDatabase = Catalog & { access(): AccessRecords; users(): UserRecords };

/**
 * The index the configuration names: Postgres when PACS_DATABASE_URL is set, else SQLite in the storage folder.
 * Only that dialect's driver is loaded, so a command of the command line does not pay for the other's.
 */
export async function openCatalog(config: Config, log?: Logger): Promise<IndexDatabase> {
  if (config.databaseUrl) return (await import('./pg.js')).PgCatalog.open(config.databaseUrl, log);
  return (await import('./sqlite.js')).SqliteCatalog.open(config.storageDir);
}

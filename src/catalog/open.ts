import type { Logger } from 'pino';
import type { AccessRecords } from '../auth/records.js';
import type { UserRecords } from '../auth/user-records.js';
import type { Config } from '../config.js';
import type { Catalog } from './catalog.js';
import { PgCatalog } from './pg.js';
import { SqliteCatalog } from './sqlite.js';

/** The index with the access records and staff accounts kept beside it, in the same database. */
export type IndexDatabase = Catalog & { access(): AccessRecords; users(): UserRecords };

/** The index the configuration names: Postgres when PACS_DATABASE_URL is set, else SQLite in the storage folder. */
export async function openCatalog(config: Config, log?: Logger): Promise<IndexDatabase> {
  return config.databaseUrl ? PgCatalog.open(config.databaseUrl, log) : SqliteCatalog.open(config.storageDir);
}

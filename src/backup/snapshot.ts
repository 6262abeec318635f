import fs from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteCatalog } from '../catalog/sqlite.js';

/**
 * A consistent copy of a SQLite index taken while its server runs (SQLite's online backup API: pages copied under a
 * read lock, restarted if a writer changes them), opened as a catalog. A backup reads the instances, keys,
 * revocations and audit trail of one moment from it, while its server goes on writing to the original.
 */
export async function snapshotSqliteIndex(storageDir: string, into: string): Promise<SqliteCatalog> {
  await fs.mkdir(into, { recursive: true });
  const snapshot = path.join(into, 'index.sqlite');
  await fs.rm(snapshot, { force: true });
  const live = new Database(path.join(storageDir, 'index.sqlite'), { readonly: true, fileMustExist: true });
  try {
    await live.backup(snapshot);
  } finally {
    live.close();
  }
  return SqliteCatalog.open(into);
}

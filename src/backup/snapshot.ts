import fs from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteCatalog } from '../catalog/sqlite.js';

/**
 * Copies the SQLite index of a data folder into `file` while its server may write to it: SQLite's online backup API
 * copies pages under a read lock and starts again if a writer changes them, so the copy is one moment's index.
 */
export async function copySqliteIndex(storageDir: string, file: string): Promise<void> {
  await fs.rm(file, { force: true });
  const live = new Database(path.join(storageDir, 'index.sqlite'), { readonly: true, fileMustExist: true });
  try {
    await live.backup(file);
  } finally {
    live.close();
  }
}

/**
 * A snapshot of a SQLite index in the folder `into`, opened as a catalog: a backup reads the instances, keys,
 * revocations and audit trail of one moment from it, while its server goes on writing to the original.
 */
export async function snapshotSqliteIndex(storageDir: string, into: string): Promise<SqliteCatalog> {
  await fs.mkdir(into, { recursive: true });
  await copySqliteIndex(storageDir, path.join(into, 'index.sqlite'));
  return SqliteCatalog.open(into);
}

import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';

/** Where a configuration keeps its objects and its index, in words for a person and as places to compare. */
export type Backend = {
  /** `files in /data/objects`, `S3 bucket "pacs" at http://minio:9000` */
  objects: string;
  /** `SQLite /data/index.sqlite`, `Postgres database "pacs" on db:5432` */
  index: string;
  /** Equal for two configurations that name the same object store. */
  objectsPlace: string;
  /** Equal for two configurations that name the same index database. */
  indexPlace: string;
};

export function backendOf(config: Config): Backend {
  const objectsDir = path.join(config.storageDir, 'objects');
  const sqliteFile = path.join(config.storageDir, 'index.sqlite');
  const s3 = config.s3;
  const db = config.databaseUrl ? new URL(config.databaseUrl) : undefined;
  const dbName = db && decodeURIComponent(db.pathname.slice(1) || db.username || 'postgres');
  const dbHost = db && `${db.hostname || 'localhost'}:${db.port || '5432'}`;
  return {
    objects: s3 ? `S3 bucket "${s3.bucket}"${s3.prefix ? ` (under ${s3.prefix})` : ''} at ${s3.endpoint ?? `AWS ${s3.region}`}` : `files in ${objectsDir}`,
    index: db ? `Postgres database "${dbName}" on ${dbHost}` : `SQLite ${sqliteFile}`,
    objectsPlace: s3 ? `s3:${s3.endpoint ?? s3.region}/${s3.bucket}/${s3.prefix}` : `fs:${real(objectsDir)}`,
    indexPlace: db ? `pg:${dbHost}/${dbName}` : `sqlite:${real(sqliteFile)}`,
  };
}

/** The same folder reached through a link is the same place. */
function real(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

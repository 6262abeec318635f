import fs from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, type Config } from '../config.js';
import type { Backend } from '../migrate/backends.js';
import { loadFileConfig, Refused } from '../migrate/ends.js';

/** What a backup's last complete run wrote beside it, last of all: when, from where, how much. */
export type BackupManifest = { format: 'pacs-lite-backup/1'; completedAt: string; source: { objects: string; index: string }; instances: number; bytes: number };

const MANIFEST = 'backup.json';

/**
 * Where a backup lives, as a configuration of its own: a folder is a PACS-lite data folder (objects/ and
 * index.sqlite, files + SQLite whatever the source runs on, so that it restores into any backend and a server can
 * even be started on it); an env file names a bucket (PACS_S3_*, AWS_*) and the folder that keeps its index
 * (PACS_STORAGE_DIR).
 */
export async function backupPlace(place: string): Promise<Config> {
  const stat = await fs.stat(place).catch(() => undefined);
  if (!stat?.isFile()) return loadConfig({ PACS_STORAGE_DIR: path.resolve(place) });
  const config = await loadFileConfig(place);
  if (!config.s3) throw new Refused(`${place} names no bucket (PACS_S3_BUCKET): for a backup to a folder, give the folder itself.`);
  if (config.databaseUrl) throw new Refused(`${place} sets PACS_DATABASE_URL: a backup keeps its index in SQLite, in its PACS_STORAGE_DIR and in the bucket; remove that line.`);
  return config;
}

/** The manifest of a backup's last complete run; undefined when no run has completed (or it is no backup). */
export async function readManifest(backup: Config): Promise<BackupManifest | undefined> {
  const text = await fs.readFile(path.join(backup.storageDir, MANIFEST), 'utf8').catch(() => undefined);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as BackupManifest);
  } catch {
    // Only informative: the index and the objects are what a restore reads.
    return undefined;
  }
}

/** Written whole (temp file, rename) once a run has put every instance in the backup. */
export async function writeManifest(backup: Config, source: Backend, totals: { instances: number; bytes: number }): Promise<void> {
  const manifest: BackupManifest = { format: 'pacs-lite-backup/1', completedAt: new Date().toISOString(), source: { objects: source.objects, index: source.index }, ...totals };
  const file = path.join(backup.storageDir, MANIFEST);
  await fs.writeFile(`${file}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  await fs.rename(`${file}.tmp`, file);
}

import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { openCatalog, type IndexDatabase } from '../catalog/open.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { GroupCommit } from '../ingest/group-commit.js';
import { freshSpoolDir } from '../services.js';
import { FileObjectStore } from '../storage/fs.js';
import type { ObjectStore } from '../storage/object-store.js';
import { S3ObjectStore } from '../storage/s3.js';
import type { Backend } from './backends.js';
import { EnvFileError, parseEnvFile } from './env-file.js';
import { ObjectsInPlace } from './objects-in-place.js';

/** The command cannot start (a store or index that cannot be used as asked); said in a line, exit code 1. */
export class Refused extends Error {}

/** One end of a copy: a configuration's object store and index, opened. */
export type End = { config: Config; backend: Backend; catalog: IndexDatabase; store: ObjectStore; close(): Promise<void> };
/** The end copied into: it stores through its own ingest path, from a spool folder of its own. */
export type TargetEnd = End & { spoolDir: string; durable: GroupCommit };

/** The configuration in an env file: only what the file says (and the defaults), nothing of this process's environment. */
export async function loadFileConfig(file: string): Promise<Config> {
  let text;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`Cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): it should hold the store's settings, one NAME=value a line`);
  }
  try {
    return loadConfig(parseEnvFile(text));
  } catch (e) {
    if (e instanceof EnvFileError) throw new ConfigError(`${file}: ${e.message}`);
    if (e instanceof ConfigError) throw new ConfigError(`${file}: ${e.message}`);
    throw e;
  }
}

/** An end that cannot be opened stops the command with its reason, and which end it was. */
export async function opening<T>(which: string, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (e) {
    if (e instanceof Refused || e instanceof ConfigError) throw e;
    throw new Refused(`Cannot open ${which}: ${(e as Error).message}`);
  }
}

/**
 * The source, opened to be read: a missing index, folder or bucket is an error, never made empty. `index`, when
 * given, is read in place of the configured one (a snapshot of it), but must exist all the same.
 */
export async function openSource(config: Config, backend: Backend, log: Logger, index?: () => Promise<IndexDatabase>): Promise<End> {
  const exists = (p: string) => fs.stat(p).then(() => true, () => false);
  const sqlite = path.join(config.storageDir, 'index.sqlite');
  if (!config.databaseUrl && !(await exists(sqlite))) {
    throw new Refused(`No index at ${sqlite}: run this with the server's settings (PACS_STORAGE_DIR, and PACS_S3_*, PACS_DATABASE_URL if it has them).`);
  }
  const objects = path.join(config.storageDir, 'objects');
  if (!config.s3 && !(await exists(objects))) throw new Refused(`No objects folder at ${objects}: run this with the server's PACS_STORAGE_DIR.`);
  const s3 = config.s3 ? await S3ObjectStore.open(config.s3, log, { create: false }) : undefined;
  const catalog = await (index ?? (() => openCatalog(config, log)))().catch(async (e: unknown) => {
    s3?.close();
    throw e;
  });
  return {
    config,
    backend,
    catalog,
    store: s3 ?? new FileObjectStore(objects),
    async close() {
      await catalog.close();
      s3?.close();
    },
  };
}

/**
 * The target, opened as its server would open it (bucket and tables made when missing), with a spool folder of its
 * own. `overwrite`: an instance it holds with other bytes is replaced, as a server configured to overwrite would.
 */
export async function openTarget(config: Config, backend: Backend, log: Logger, sourceStore: ObjectStore | undefined, overwrite = false): Promise<TargetEnd> {
  const s3 = !sourceStore && config.s3 ? await S3ObjectStore.open(config.s3, log) : undefined;
  const store = sourceStore ? new ObjectsInPlace(sourceStore) : (s3 ?? (await new FileObjectStore(path.join(config.storageDir, 'objects')).init()));
  // Beside the target's objects folder, so that a spooled file is renamed into place rather than copied again; made
  // first, as the server makes it, so that a new data folder exists before its SQLite index is opened.
  const spoolDir = await freshSpoolDir(path.join(config.storageDir, 'tmp'));
  const catalog = await openCatalog(config, log).catch(async (e: unknown) => {
    s3?.close();
    await fs.rm(spoolDir, { recursive: true, force: true });
    throw e;
  });
  return {
    config,
    backend,
    catalog,
    store,
    spoolDir,
    durable: new GroupCommit(store, catalog, overwrite, log),
    async close() {
      await catalog.close();
      s3?.close();
      await fs.rm(spoolDir, { recursive: true, force: true });
    },
  };
}

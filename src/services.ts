import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { SqliteCatalog } from './catalog/sqlite.js';
import type { Config } from './config.js';
import type { Services } from './context.js';
import { FileObjectStore } from './storage/fs.js';

/** Opens the object store and the index named by the configuration; main.ts and the CLI share it. */
export async function openServices(config: Config, log: Logger): Promise<Services> {
  const spoolDir = path.join(config.storageDir, 'tmp');
  // Leftovers of an interrupted upload were never acknowledged: they go.
  await fs.rm(spoolDir, { recursive: true, force: true });
  await fs.mkdir(spoolDir, { recursive: true });
  const store = await new FileObjectStore(path.join(config.storageDir, 'objects')).init();
  const catalog = SqliteCatalog.open(config.storageDir);
  return {
    config,
    store,
    catalog,
    log,
    ingest: { store, catalog, spoolDir, maxInstanceBytes: config.maxInstanceBytes, overwriteDifferent: config.overwriteDifferent, log },
  };
}

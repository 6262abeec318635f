import type { Logger } from 'pino';
import type { Catalog } from './catalog/catalog.js';
import type { Config } from './config.js';
import type { IngestDeps } from './ingest/ingest.js';
import type { ObjectStore } from './storage/object-store.js';

/** What the routers need, built once in main.ts. */
export type Services = {
  config: Config;
  store: ObjectStore;
  catalog: Catalog;
  ingest: IngestDeps;
  log: Logger;
};

/** Hono context values, typed once (STYLE.md). */
export type Env = {
  Variables: {
    log: Logger;
    requestId: string;
  };
};

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
  /** Closes the index and removes this process's spool folder. */
  close(): Promise<void>;
};

/** Hono context values, typed once (STYLE.md). */
export type Env = {
  /** Present under @hono/node-server: the Node request, whose body streams faster than its web wrapper. */
  Bindings: { incoming?: AsyncIterable<Uint8Array> };
  Variables: {
    log: Logger;
    requestId: string;
  };
};

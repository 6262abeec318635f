import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Services } from '../../src/context.js';
import { createLogger } from '../../src/logger.js';
import { openServices } from '../../src/services.js';
import { TEST_ADMIN_KEY } from './server.js';

export type InProcessApp = {
  app: ReturnType<typeof createApp>;
  services: Services;
  dataDir: string;
  /** The key of the administrator `request` sends as (PACS_ADMIN_KEY). */
  adminKey: string;
  /** app.request() as the administrator, unless `init` carries its own Authorization; `path` from the server's root. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Closes the services and removes the data folder. */
  close(): Promise<void>;
};

/**
 * The real services and app, as main.ts builds them, in this process over a data folder of their own (files and
 * SQLite, the embedded default): requests go through app.request() without a socket. For route-level tests
 * (negotiation, status codes, error bodies) and fuzzing; durability, replicas and migration need the spawned server
 * of server.ts. `env` is the whole configuration: nothing is read from this process's environment.
 */
export async function openApp(env: Record<string, string> = {}): Promise<InProcessApp> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-app-'));
  const config = loadConfig({ PACS_STORAGE_DIR: dataDir, PACS_ADMIN_KEY: TEST_ADMIN_KEY, PACS_LOG_LEVEL: 'silent', ...env });
  const services = await openServices(config, createLogger(config.logLevel));
  const app = createApp(services);
  return {
    app,
    services,
    dataDir,
    adminKey: TEST_ADMIN_KEY,
    request(url, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${TEST_ADMIN_KEY}`);
      return Promise.resolve(app.request(url, { ...init, headers }));
    },
    async close() {
      await services.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Services } from '../../src/context.js';
import { createLogger } from '../../src/logger.js';
import { openServices } from '../../src/services.js';

export type FuzzServer = { services: Services; app: ReturnType<typeof createApp>; adminKey: string; close(): Promise<void> };

/** The real services and app over a data folder of their own (SQLite, files), answering requests without a socket. */
export async function openFuzzServer(env: Record<string, string> = {}): Promise<FuzzServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-fuzz-'));
  const adminKey = randomBytes(32).toString('base64url');
  const config = loadConfig({ PACS_STORAGE_DIR: dir, PACS_ADMIN_KEY: adminKey, PACS_LOG_LEVEL: 'silent', ...env });
  const services = await openServices(config, createLogger('silent'));
  return {
    services,
    app: createApp(services),
    adminKey,
    async close() {
      await services.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import type { DatabaseServer } from './postgres.js';
import { S3RVER_CREDENTIALS } from './s3.js';

/**
 * The object store and index a test project runs its servers on (vitest.config.ts): the project's globalSetup
 * (backend-setup.ts) starts s3rver and/or Postgres once and provides where they listen; each data folder then gets
 * a bucket and/or a database of its own here, so that tests stay as independent as they are on the filesystem.
 */

export type BackendName = 'fs+sqlite' | 's3+sqlite' | 'fs+postgres' | 's3+postgres';

export type ProjectBackend = {
  name: BackendName;
  /** s3rver's endpoint and the folder it keeps its buckets in. */
  s3?: { endpoint: string; directory: string };
  postgres?: DatabaseServer;
};

declare module 'vitest' {
  interface ProvidedContext {
    backend: ProjectBackend;
  }
}

const FS_SQLITE: ProjectBackend = { name: 'fs+sqlite' };

/** The backend of the project running this file; fs+sqlite where no project provides one. */
export function projectBackend(): ProjectBackend {
  return inject('backend') ?? FS_SQLITE;
}

const byDataDir = new Map<string, Promise<Record<string, string>>>();

/**
 * The environment that puts a server (or a CLI) with this data folder on the project's backend: the same bucket
 * and database for the same folder, so that a restarted server or a CLI beside it finds what the first one stored.
 */
export function backendEnv(dataDir: string): Promise<Record<string, string>> {
  let env = byDataDir.get(dataDir);
  if (!env) {
    env = envFor(projectBackend());
    byDataDir.set(dataDir, env);
  }
  return env;
}

async function envFor(backend: ProjectBackend): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  if (backend.s3) {
    // The server creates its bucket at start.
    Object.assign(env, {
      PACS_S3_ENDPOINT: backend.s3.endpoint,
      PACS_S3_BUCKET: `pacs-test-${randomBytes(8).toString('hex')}`,
      PACS_S3_FORCE_PATH_STYLE: 'true',
      ...S3RVER_CREDENTIALS,
      AWS_SESSION_TOKEN: '',
      AWS_PROFILE: '',
    });
  }
  if (backend.postgres) {
    const { createDatabaseOn } = await import('./postgres.js');
    env.PACS_DATABASE_URL = await createDatabaseOn(backend.postgres);
  }
  return env;
}

/** What a server's environment says it stores into. */
export type ServerBackend = { store: 'fs' | 's3'; index: 'sqlite' | 'postgres'; env: Record<string, string> };

const STORAGE_VARIABLES = /^(PACS_S3_|PACS_DATABASE_URL$|AWS_)/;

export function serverBackend(env: Record<string, string | undefined>): ServerBackend {
  const chosen = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => STORAGE_VARIABLES.test(e[0]) && e[1] !== undefined));
  return { store: chosen.PACS_S3_BUCKET ? 's3' : 'fs', index: chosen.PACS_DATABASE_URL ? 'postgres' : 'sqlite', env: chosen };
}

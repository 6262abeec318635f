import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { PgDialect } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { AccessRecords } from '../auth/records.js';
import { CatalogUnavailable } from './catalog.js';
import { openPool, orUnavailable, transaction, unreachable, withClient, type Db } from './pg-pool.js';
import { execute, runPlanAsync, type Plan, type Step } from './plan.js';
import * as schema from './schema.pg.js';
import { SqlAccessRecords } from './sql-access.js';
import { binder } from './sql-rows.js';
import { SqlCatalog } from './sql-catalog.js';
import { SqlUserRecords } from './sql-users.js';
import type { UserRecords } from '../auth/user-records.js';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/pg', import.meta.url));

/** Advisory lock keys ('PACS' and 'PACS' + 1): replicas migrate one at a time, and write the index one at a time. */
const MIGRATION_LOCK = 0x50414353;
const WRITER_LOCK = 0x50414354;
/** The space ('PACS' + 2) of per-instance advisory locks, pg_advisory_lock(INSTANCE_LOCKS, a hash of the SOP Instance UID). */
const INSTANCE_LOCKS = 0x50414355;

/** The index in Postgres, shared by every replica (DESIGN: scale-out over one Postgres). */
export class PgCatalog extends SqlCatalog {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly db: Db,
  ) {
    super(schema, DIALECT);
  }

  /** Connects and brings the schema up to date; replicas starting together take turns (an advisory lock). */
  static async open(url: string, log?: Logger): Promise<PgCatalog> {
    const pool = openPool(url, log);
    try {
      await withClient(pool, async (client) => {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
        await assertUtf8(client);
        await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS });
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      });
    } catch (e) {
      await pool.end();
      throw unreachable(e) ?? refused(e) ?? e;
    }
    return new PgCatalog(pool, drizzle({ client: pool, schema }));
  }

  /** Keys, revocations and the audit trail live in the same database; their writes need not wait for the index's writer. */
  access(): AccessRecords {
    return new SqlAccessRecords(schema, (plan) => this.read(plan), (plan) => this.transact(plan));
  }

  /** Staff accounts and sessions, read on every request made with a session: like access, beside the index's writer. */
  users(): UserRecords {
    return new SqlUserRecords(schema, (plan) => this.read(plan), (plan) => this.transact(plan));
  }

  /** Each statement on whichever connection is free; every statement sees what was committed before it began. */
  protected read<T>(plan: Plan<T>): Promise<T> {
    return orUnavailable(runPlanAsync(plan, (step) => perform(this.db, step)));
  }

  /** One transaction, as the only writer of the index among all replicas, as SQLite's write lock makes it in one file. */
  protected write<T>(plan: Plan<T>): Promise<T> {
    return this.transact(
      (function* () {
        yield* execute(sql`SELECT pg_advisory_xact_lock(${WRITER_LOCK})`);
        return yield* plan;
      })(),
    );
  }

  /** One transaction on one connection. */
  private transact<T>(plan: Plan<T>): Promise<T> {
    return orUnavailable(transaction(this.pool, (tx) => runPlanAsync(plan, (step) => perform(tx, step))));
  }

  /**
   * Session-level advisory locks on one connection, held while `work` puts objects and indexes them. Without them two
   * replicas both found an instance new, both put its object under its one key, and the index kept the first one's
   * checksum over the last one's bytes (test/integration/replicas.test.ts). Taken in key order, so replicas whose
   * groups share instances cannot deadlock; a hash collision only makes two instances wait for each other.
   */
  async withInstanceLocks<T>(sopUids: string[], work: () => Promise<T>): Promise<T> {
    if (sopUids.length === 0) return work();
    const keys = [...new Set(sopUids.map((uid) => createHash('sha256').update(uid).digest().readInt32BE(0)))].sort((x, y) => x - y);
    const client = await orUnavailable(this.pool.connect());
    let unlocked = false;
    try {
      // unnest gives the sorted keys in their order, and each row takes its lock in turn.
      await orUnavailable(client.query('SELECT pg_advisory_lock($1::int, k) FROM unnest($2::int[]) AS k', [INSTANCE_LOCKS, keys]));
      try {
        return await work();
      } finally {
        // Without throwing over work's own error: a connection that cannot unlock is dropped, and its locks with it.
        unlocked = await client.query('SELECT pg_advisory_unlock_all()').then(() => true, () => false);
      }
    } finally {
      client.release(!unlocked);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

const DIALECT = new PgDialect();
/** Statements built once with placeholders, rendered once. */
const rendered = new WeakMap<SQL, { text: string; bind: ReturnType<typeof binder> }>();

async function perform(db: Db, step: Step): Promise<unknown[]> {
  if (step.kind === 'rows' && step.values) {
    let query = rendered.get(step.sql);
    if (!query) {
      const { sql: text, params } = DIALECT.sqlToQuery(step.sql);
      rendered.set(step.sql, (query = { text, bind: binder(params) }));
    }
    const client = (db as Db & { $client: pg.Pool | pg.PoolClient }).$client;
    return (await client.query(query.text, query.bind(step.values))).rows;
  }
  if (step.kind === 'rows') return (await db.execute(step.sql)).rows;
  await db.execute(step.sql);
  return [];
}

/** Postgres's answers to a URL naming a database it does not have, or a user or password it refuses. */
const REFUSED_CODES = new Set(['3D000', '28P01', '28000']);

/**
 * A PACS_DATABASE_URL the database refuses, as CatalogUnavailable: the command line says it in a line (it printed a
 * stack trace for a mistyped database name), the server in its "cannot start". pg's words name no password.
 */
function refused(error: unknown): CatalogUnavailable | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (!code || !REFUSED_CODES.has(code)) return undefined;
  return new CatalogUnavailable(`the index database refused the connection: ${(error as Error).message} (${code}); check PACS_DATABASE_URL`, { cause: error });
}

/** QIDO matches non-ASCII names character by character: a SQL_ASCII or Latin-1 database would match bytes instead. */
async function assertUtf8(client: pg.PoolClient): Promise<void> {
  const { rows } = await client.query<{ server_encoding: string }>('SHOW server_encoding');
  const encoding = rows[0]?.server_encoding;
  if (encoding !== 'UTF8') throw new Error(`the index database uses the ${encoding} encoding; create it with ENCODING 'UTF8' (CREATE DATABASE … TEMPLATE template0 ENCODING 'UTF8')`);
}

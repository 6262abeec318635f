import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { SQL } from 'drizzle-orm';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { SQLiteSyncDialect } from 'drizzle-orm/sqlite-core';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import type { AccessRecords } from '../auth/records.js';
import { runPlan, type Plan, type Step } from './plan.js';
import * as schema from './schema.sqlite.js';
import { SqlAccessRecords } from './sql-access.js';
import { binder } from './sql-rows.js';
import { SqlCatalog } from './sql-catalog.js';
import { SqlUserRecords } from './sql-users.js';
import type { UserRecords } from '../auth/user-records.js';
import { CoalescedSync, syncAndClose } from '../storage/coalesced-sync.js';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/sqlite', import.meta.url));
const DIALECT = new SQLiteSyncDialect();

/** The index in one SQLite file in the storage folder: the embedded default. */
export class SqliteCatalog extends SqlCatalog {
  private readonly sqlite: Database.Database;
  private readonly db: BetterSQLite3Database<typeof schema>;
  private readonly wal: string;
  /** Commits that end while the write-ahead log is being synced share the next sync (group commit). */
  private readonly walSync = new CoalescedSync(syncWriteAheadLog);

  constructor(file: string) {
    super(schema, DIALECT);
    keepPrivate(file);
    this.sqlite = new Database(file);
    // WAL lets readers run beside the writer. NORMAL leaves out only the sync of the log at each commit, which write()
    // does itself off the event loop, shared by concurrent commits: an acknowledged commit still survives power loss.
    this.sqlite.pragma('journal_mode = WAL');
    this.sqlite.pragma('synchronous = NORMAL');
    this.wal = `${file}-wal`;
    this.sqlite.pragma('busy_timeout = 10000');
    // QIDO wildcards are case-sensitive outside person names (PS3.4 C.2.2.2.4), as LIKE is in Postgres.
    this.sqlite.pragma('case_sensitive_like = ON');
    this.db = drizzle(this.sqlite, { schema });
    migrate(this.db, { migrationsFolder: MIGRATIONS });
  }

  /** Keys, revocations and the audit trail live in the same database. */
  access(): AccessRecords {
    return new SqlAccessRecords(schema, (plan) => this.read(plan), (plan) => this.write(plan));
  }

  /** Staff accounts and sessions live in the same database. */
  users(): UserRecords {
    return new SqlUserRecords(schema, (plan) => this.read(plan), (plan) => this.write(plan));
  }

  static open(storageDir: string): SqliteCatalog {
    return new SqliteCatalog(path.join(storageDir, 'index.sqlite'));
  }

  /** All steps run in one synchronous stretch of this connection: no write of this process comes between. */
  protected async read<T>(plan: Plan<T>): Promise<T> {
    return runPlan(plan, (step) => this.perform(this.db, step));
  }

  /**
   * IMMEDIATE: the write lock is taken before the first read, so another process cannot change the rows in between.
   * Resolves once the commit is on disk: the log it was appended to has been synced since.
   */
  protected async write<T>(plan: Plan<T>): Promise<T> {
    const result = this.db.transaction((tx) => runPlan(plan, (step) => this.perform(tx, step)), { behavior: 'immediate' });
    await this.walSync.sync(this.wal);
    return result;
  }

  /** Statements built once with placeholders, prepared once on this connection (a transaction runs on it too). */
  private readonly prepared = new WeakMap<SQL, { statement: Database.Statement; bind: ReturnType<typeof binder> }>();

  private perform(db: BetterSQLite3Database<typeof schema> | Transaction, step: Step): unknown[] {
    if (step.kind !== 'rows' || !step.values) return perform(db, step);
    let query = this.prepared.get(step.sql);
    if (!query) {
      const { sql: text, params } = DIALECT.sqlToQuery(step.sql);
      query = { statement: this.sqlite.prepare(text), bind: binder(params) };
      this.prepared.set(step.sql, query);
    }
    const params = query.bind(step.values);
    // A write without RETURNING answers no rows, and better-sqlite3 runs it only by run().
    if (query.statement.reader) return query.statement.all(...params);
    query.statement.run(...params);
    return [];
  }

  /** One server per SQLite file, whose group commit already stores one group at a time. */
  withInstanceLocks<T>(_sopUids: string[], work: () => Promise<T>): Promise<T> {
    return work();
  }

  async close(): Promise<void> {
    this.sqlite.close();
  }
}

/**
 * fdatasync of the write-ahead log, what synchronous = FULL does at each commit. The log lives as long as a connection
 * is open (this one is); absent, every commit is already in the database file, synced by the checkpoint that emptied it.
 */
async function syncWriteAheadLog(wal: string): Promise<void> {
  let handle;
  try {
    handle = await fs.promises.open(wal, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await syncAndClose(handle, (h) => h.datasync());
}

/**
 * The index holds patient data: readable by the server's user only, whatever the umask. SQLite gives the -wal and
 * -shm files it creates the mode of the database file; files made by an earlier version are narrowed too.
 */
function keepPrivate(file: string): void {
  if (file === ':memory:') return; // SQLite's name for a database with no file, not a path
  try {
    fs.closeSync(fs.openSync(file, 'a', 0o600));
  } catch {
    return; // a folder that is missing or not ours: SQLite's own open says so next, as it always did
  }
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch (e) {
      // Absent, or another user's file this process may still open: left as it is.
      if (!['ENOENT', 'EPERM'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
  }
}

type Transaction = Parameters<Parameters<BetterSQLite3Database<typeof schema>['transaction']>[0]>[0];

function perform(db: BetterSQLite3Database<typeof schema> | Transaction, step: Step): unknown[] {
  if (step.kind === 'rows') return db.all(step.sql);
  db.run(step.sql);
  return [];
}

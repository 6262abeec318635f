import { eq, getTableColumns, sql, type Column, type SQL, type Table } from 'drizzle-orm';
import type { Role } from '../auth/principal.js';
import type { SessionRecord, StoredUser, UserChange, UserRecord, UserRecords } from '../auth/user-records.js';
import { execute, fetchRows, type Plan } from './plan.js';

type UserRow = Omit<StoredUser, 'roles' | 'mustChangePassword'> & { roles: string; mustChangePassword: number };
type TableOf<Row> = Table & { [K in keyof Row]: Column };

/** The users and sessions tables of schema.sqlite.ts or schema.pg.ts. */
export type UserTables = { users: TableOf<UserRow>; sessions: TableOf<SessionRecord> };

type Run = <T>(plan: Plan<T>) => Promise<T>;

/** Accounts and sessions in the index's database, one text of SQL for both dialects. */
export class SqlUserRecords implements UserRecords {
  private readonly userColumns: SQL;
  /** Asked on every request made with a session: prepared once, as the API key lookup is. */
  private readonly sessionUserQuery: SQL;

  constructor(
    private readonly t: UserTables,
    private readonly read: Run,
    private readonly transact: Run,
  ) {
    this.userColumns = selectList(t.users, 'u_');
    const { sessions, users } = t;
    this.sessionUserQuery = sql`SELECT ${selectList(sessions, 's_')}, ${this.userColumns} FROM ${sessions} JOIN ${users} ON ${eq(users.id, sessions.userId)}
      WHERE ${eq(sessions.idHash, sql.placeholder('idHash'))}`;
  }

  async countUsers(): Promise<number> {
    const [row] = await this.read(fetchRows<{ n: unknown }>(sql`SELECT COUNT(*) AS n FROM ${this.t.users}`));
    return Number(row?.n ?? 0);
  }

  addUser(user: StoredUser): Promise<boolean> {
    const row: UserRow = { ...user, roles: user.roles.join(','), mustChangePassword: user.mustChangePassword ? 1 : 0 };
    const { users } = this.t;
    const columns = getTableColumns(users) as Record<keyof UserRow, Column>;
    const keys = Object.keys(columns) as Array<keyof UserRow>;
    return this.transact(
      (function* () {
        const inserted = yield* fetchRows(
          sql`INSERT INTO ${users} (${sql.join(keys.map((k) => sql.identifier(columns[k].name)), sql`, `)})
            VALUES (${sql.join(keys.map((k) => sql.param(row[k], columns[k])), sql`, `)}) ON CONFLICT DO NOTHING RETURNING ${sql.identifier(columns.id.name)}`,
        );
        return inserted.length > 0;
      })(),
    );
  }

  async userByLogin(login: string): Promise<StoredUser | undefined> {
    const [row] = await this.read(fetchRows<Record<string, unknown>>(sql`SELECT ${this.userColumns} FROM ${this.t.users} WHERE ${eq(this.t.users.login, login)}`));
    return row && storedUser(row);
  }

  async users(): Promise<UserRecord[]> {
    const rows = await this.read(fetchRows<Record<string, unknown>>(sql`SELECT ${this.userColumns} FROM ${this.t.users} ORDER BY ${this.t.users.login}`));
    return rows.map((row) => withoutHash(storedUser(row)));
  }

  updateUser(id: string, change: UserChange): Promise<boolean> {
    const { users } = this.t;
    const columns = getTableColumns(users) as Record<keyof UserRow, Column>;
    const sets = Object.entries(change).map(([key, value]) => {
      const stored = key === 'mustChangePassword' ? (value ? 1 : 0) : key === 'roles' ? (value as Role[]).join(',') : value;
      return sql`${sql.identifier(columns[key as keyof UserRow].name)} = ${stored}`;
    });
    if (sets.length === 0) return Promise.resolve(true);
    return this.transact(
      (function* () {
        const changed = yield* fetchRows(sql`UPDATE ${users} SET ${sql.join(sets, sql`, `)} WHERE ${eq(users.id, id)} RETURNING ${sql.identifier(columns.id.name)}`);
        return changed.length > 0;
      })(),
    );
  }

  async addSession(session: SessionRecord): Promise<void> {
    const { sessions: s } = this.t;
    await this.transact(
      execute(sql`INSERT INTO ${s} (${sql.identifier(s.idHash.name)}, ${sql.identifier(s.userId.name)}, ${sql.identifier(s.createdAt.name)}, ${sql.identifier(s.lastSeenAt.name)})
        VALUES (${session.idHash}, ${session.userId}, ${session.createdAt}, ${session.lastSeenAt})`),
    );
  }

  async sessionUser(idHash: string): Promise<{ session: SessionRecord; user: UserRecord } | undefined> {
    const [row] = await this.read(fetchRows<Record<string, unknown>>(this.sessionUserQuery, { idHash }));
    if (!row) return undefined;
    const session: SessionRecord = { idHash: String(row.s_idHash), userId: String(row.s_userId), createdAt: Number(row.s_createdAt), lastSeenAt: Number(row.s_lastSeenAt) };
    return { session, user: withoutHash(storedUser(row)) };
  }

  async touchSession(idHash: string, at: number): Promise<void> {
    const { sessions: s } = this.t;
    await this.transact(execute(sql`UPDATE ${s} SET ${sql.identifier(s.lastSeenAt.name)} = ${at} WHERE ${eq(s.idHash, idHash)}`));
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.transact(execute(sql`DELETE FROM ${this.t.sessions} WHERE ${eq(this.t.sessions.idHash, idHash)}`));
  }

  async deleteUserSessions(userId: string): Promise<void> {
    await this.transact(execute(sql`DELETE FROM ${this.t.sessions} WHERE ${eq(this.t.sessions.userId, userId)}`));
  }
}

/** Every column of a table, each named by its key after a prefix, so that a join's two tables cannot collide. */
function selectList(table: Table, prefix: string): SQL {
  return sql.join(Object.entries(getTableColumns(table)).map(([key, column]) => sql`${column} AS ${sql.identifier(prefix + key)}`), sql`, `);
}

/** A user row as either driver answers it (Postgres gives bigint as text). */
function storedUser(row: Record<string, unknown>): StoredUser {
  const time = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: String(row.u_id),
    login: String(row.u_login),
    displayName: String(row.u_displayName),
    roles: String(row.u_roles).split(',').filter(Boolean) as Role[],
    passwordHash: String(row.u_passwordHash),
    mustChangePassword: Number(row.u_mustChangePassword) === 1,
    createdAt: Number(row.u_createdAt),
    disabledAt: time(row.u_disabledAt),
    failedSignIns: Number(row.u_failedSignIns),
    lockedUntil: time(row.u_lockedUntil),
    lastSignInAt: time(row.u_lastSignInAt),
  };
}

function withoutHash({ passwordHash: _, ...user }: StoredUser): UserRecord {
  return user;
}

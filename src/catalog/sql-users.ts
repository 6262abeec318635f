import { eq, sql } from 'drizzle-orm';
import type { Role } from '../auth/principal.js';
import type { SessionRecord, StoredUser, UserChange, UserRecord, UserRecords } from '../auth/user-records.js';
import { execute, fetchRows } from './plan.js';
import { assignments, changed, columnsOf, insertInto, prefixed, SelectList, Selection, type Run, type TableOf } from './sql-rows.js';

type UserRow = Omit<StoredUser, 'roles' | 'mustChangePassword'> & { roles: string; mustChangePassword: number };
/** A session's user, with the session's own columns named `session.…` beside the user's. */
type SessionUserRow = UserRow & { [K in keyof SessionRecord as `session.${K}`]: SessionRecord[K] };

/** The users and sessions tables of schema.sqlite.ts or schema.pg.ts. */
export type UserTables = { users: TableOf<UserRow>; sessions: TableOf<SessionRecord> };

/** Accounts and sessions in the index's database, one text of SQL for both dialects. */
export class SqlUserRecords implements UserRecords {
  private readonly userList: SelectList<UserRow>;
  /** Asked on every request made with a session: prepared once, as the API key lookup is. */
  private readonly sessionUserQuery: Selection<SessionUserRow>;

  constructor(
    private readonly t: UserTables,
    private readonly read: Run,
    private readonly transact: Run,
  ) {
    const { sessions, users } = t;
    this.userList = new SelectList(columnsOf(users));
    this.sessionUserQuery = new Selection(
      { ...columnsOf(users), ...prefixed('session.', columnsOf(sessions)) },
      sql`FROM ${sessions} JOIN ${users} ON ${eq(users.id, sessions.userId)} WHERE ${eq(sessions.idHash, sql.placeholder('idHash'))}`,
    );
  }

  async countUsers(): Promise<number> {
    const [row] = await this.read(fetchRows<{ n: unknown }>(sql`SELECT COUNT(*) AS n FROM ${this.t.users}`));
    return Number(row?.n ?? 0);
  }

  async addUser(user: StoredUser): Promise<boolean> {
    const row: UserRow = { ...user, roles: user.roles.join(','), mustChangePassword: user.mustChangePassword ? 1 : 0 };
    return (await this.transact(insertInto(this.t.users, [row], sql`ON CONFLICT DO NOTHING`))) > 0;
  }

  async userByLogin(login: string): Promise<StoredUser | undefined> {
    const [row] = await this.read(this.userList.select(sql`FROM ${this.t.users} WHERE ${eq(this.t.users.login, login)}`));
    return row && storedUser(row);
  }

  async users(): Promise<UserRecord[]> {
    const rows = await this.read(this.userList.select(sql`FROM ${this.t.users} ORDER BY ${this.t.users.login}`));
    return rows.map((row) => withoutHash(storedUser(row)));
  }

  async updateUser(id: string, change: UserChange): Promise<boolean> {
    const { roles, mustChangePassword, ...rest } = change;
    const values: Partial<UserRow> = {
      ...rest,
      ...(roles !== undefined && { roles: roles.join(',') }),
      ...(mustChangePassword !== undefined && { mustChangePassword: mustChangePassword ? 1 : 0 }),
    };
    if (Object.keys(values).length === 0) return true;
    const { users } = this.t;
    return (await this.transact(changed(sql`UPDATE ${users} SET ${assignments(users, values)} WHERE ${eq(users.id, id)}`, users.id))) > 0;
  }

  async addSession(session: SessionRecord): Promise<void> {
    await this.transact(insertInto(this.t.sessions, [session]));
  }

  async sessionUser(idHash: string): Promise<{ session: SessionRecord; user: UserRecord } | undefined> {
    const [row] = await this.read(this.sessionUserQuery.rows({ idHash }));
    if (!row) return undefined;
    const session: SessionRecord = { idHash: row['session.idHash'], userId: row['session.userId'], createdAt: row['session.createdAt'], lastSeenAt: row['session.lastSeenAt'] };
    return { session, user: withoutHash(storedUser(row)) };
  }

  async touchSession(idHash: string, at: number): Promise<void> {
    const { sessions } = this.t;
    await this.transact(execute(sql`UPDATE ${sessions} SET ${assignments(sessions, { lastSeenAt: at })} WHERE ${eq(sessions.idHash, idHash)}`));
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.transact(execute(sql`DELETE FROM ${this.t.sessions} WHERE ${eq(this.t.sessions.idHash, idHash)}`));
  }

  async deleteUserSessions(userId: string): Promise<void> {
    await this.transact(execute(sql`DELETE FROM ${this.t.sessions} WHERE ${eq(this.t.sessions.userId, userId)}`));
  }
}

/** A user row as stored: roles comma-separated, the must-change flag as 1 or 0. */
function storedUser(row: UserRow): StoredUser {
  const { id, login, displayName, passwordHash, createdAt, disabledAt, failedSignIns, lockedUntil, lastSignInAt } = row;
  const roles = row.roles.split(',').filter(Boolean) as Role[];
  return { id, login, displayName, roles, passwordHash, mustChangePassword: row.mustChangePassword === 1, createdAt, disabledAt, failedSignIns, lockedUntil, lastSignInAt };
}

function withoutHash({ passwordHash: _, ...user }: StoredUser): UserRecord {
  return user;
}

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { hash, verify } from '@node-rs/argon2';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import type { AuthFailures } from './auth-failures.js';
import type { Role } from './principal.js';
import type { StoredUser, UserRecord, UserRecords } from './user-records.js';

/** The roles a person may hold; `viewer-links` is the EMR's, a machine's. */
export const USER_ROLES = ['read', 'upload', 'admin'] as const satisfies readonly Role[];
export const MIN_PASSWORD_LENGTH = 10;
const LOGIN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** @node-rs/argon2's Algorithm.Argon2id, a const enum that isolated modules cannot read. */
const ARGON2ID = 2;
/** Argon2id at OWASP's second setting (19 MiB, 2 passes): about 30 ms here, and every guess costs the guesser as much. */
const ARGON2 = { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 };
/** Each failure in a row makes the next answer wait this much longer, up to the lockout. */
const SLOWDOWN_MS = 250;
const MAX_UNKNOWN_NAMES = 10_000;
const WRONG = 'the name or the password is wrong';

/** 401 or 429 at sign-in: never says which of name or password was wrong, nor whether the name exists. */
export class SignInRefused extends HttpError {
  constructor(locked: boolean) {
    super(locked ? 429 : 401, locked ? 'locked-out' : 'sign-in-refused', locked ? 'too many failed sign-ins for this name or from this address; wait a while and try again, or ask the administrator' : WRONG);
  }
}

/** Accounts of staff (issue 14): made with a one-time password, changed by its owner, disabled by an admin. */
export class Users {
  // Verified when the name is unknown, so that an unknown name costs the same time as a wrong password.
  private readonly decoy = hash(randomBytes(16).toString('hex'), ARGON2);
  private readonly unknownNames = new UnknownNames();

  constructor(
    private readonly records: UserRecords,
    private readonly lockout: { after: number; duration: number },
    private readonly failures: AuthFailures,
  ) {}

  count(): Promise<number> {
    return this.records.countUsers();
  }

  list(): Promise<UserRecord[]> {
    return this.records.users();
  }

  /** A new account; without a password given, one is made and must be changed at first sign-in. */
  async create(opts: { login: string; displayName?: string; roles: Role[]; password?: string }): Promise<{ user: UserRecord; password: string }> {
    if (!LOGIN.test(opts.login)) throw new BadRequest('a login name is 1 to 64 letters, digits, ".", "_", "@" or "-", beginning with a letter or digit');
    const roles = userRoles(opts.roles);
    if (opts.password !== undefined) checkStrength(opts.password);
    const password = opts.password ?? oneTimePassword();
    const user: StoredUser = {
      id: randomBytes(6).toString('hex'),
      login: opts.login,
      displayName: opts.displayName?.trim() || opts.login,
      roles,
      passwordHash: await hash(password, ARGON2),
      mustChangePassword: opts.password === undefined,
      createdAt: Date.now(),
      disabledAt: null,
      failedSignIns: 0,
      lockedUntil: null,
      lastSignInAt: null,
    };
    if (!(await this.records.addUser(user))) throw new HttpError(409, 'conflict', `a user named "${opts.login}" exists already; choose another login name`);
    const { passwordHash: _, ...record } = user;
    return { user: record, password };
  }

  /** Disabling ends the user's sessions at once; enabling lets them sign in again. */
  async setDisabled(login: string, disabled: boolean): Promise<void> {
    const user = await this.known(login);
    if (disabled) await this.keepAnAdmin(user, 'disable');
    await this.records.updateUser(user.id, { disabledAt: disabled ? Date.now() : null, ...(disabled ? {} : { failedSignIns: 0, lockedUntil: null }) });
    if (disabled) await this.records.deleteUserSessions(user.id);
  }

  /** Roles take effect from the user's next request: a session reads them with every request. */
  async setRoles(login: string, roles: Role[]): Promise<UserRecord> {
    const user = await this.known(login);
    const next = userRoles(roles);
    if (!next.includes('admin')) await this.keepAnAdmin(user, 'take the admin role from');
    await this.records.updateUser(user.id, { roles: next });
    const { passwordHash: _, ...record } = user;
    return { ...record, roles: next };
  }

  /** A new one-time password, to be changed at the next sign-in; every session of the user ends. */
  async resetPassword(login: string): Promise<string> {
    const user = await this.known(login);
    const password = oneTimePassword();
    await this.records.updateUser(user.id, { passwordHash: await hash(password, ARGON2), mustChangePassword: true, failedSignIns: 0, lockedUntil: null });
    await this.records.deleteUserSessions(user.id);
    return password;
  }

  /** The owner changes their password, knowing the current one; their other sessions end. */
  async changePassword(login: string, current: string, next: string, address: string): Promise<UserRecord> {
    checkStrength(next);
    const user = await this.signIn(login, current, address);
    if (next === current) throw new BadRequest('the new password is the one in use; choose another');
    await this.records.updateUser(user.id, { passwordHash: await hash(next, ARGON2), mustChangePassword: false });
    await this.records.deleteUserSessions(user.id);
    return { ...user, mustChangePassword: false };
  }

  /**
   * The user a name and password stand for, or SignInRefused. Failures are slowed one by one, lock the name after
   * `lockout.after` in a row (an account's in the index: every replica refuses), and count against the address
   * (auth-failures.ts). A name no account has is slowed and locked alike, so that neither tells which names exist.
   */
  async signIn(login: string, password: string, address: string): Promise<UserRecord> {
    // A dot marks the attempt as no API key: counted by address only, by a digest of what was tried.
    const attempt = `sign-in.${login}.${password}`;
    try {
      this.failures.check(address, attempt);
    } catch {
      throw new SignInRefused(true);
    }
    const now = Date.now();
    const user = await this.records.userByLogin(login);
    const streak = user ?? this.unknownNames.get(login);
    if (streak && streak.lockedUntil !== null && streak.lockedUntil > now) throw new SignInRefused(true);
    const good = await verify(user?.passwordHash ?? (await this.decoy), password).catch(() => false);
    if (user && good && user.disabledAt === null) {
      await this.records.updateUser(user.id, { failedSignIns: 0, lockedUntil: null, lastSignInAt: now });
      const { passwordHash: _, ...record } = user;
      return { ...record, lastSignInAt: now };
    }
    this.failures.fail(address, attempt);
    const failed = (streak?.failedSignIns ?? 0) + 1;
    const next: FailureStreak = failed >= this.lockout.after ? { failedSignIns: 0, lockedUntil: now + this.lockout.duration } : { failedSignIns: failed, lockedUntil: null };
    if (user) await this.records.updateUser(user.id, next);
    else this.unknownNames.set(login, next);
    await sleep(SLOWDOWN_MS * failed);
    throw new SignInRefused(false);
  }

  /** Refuses a change that would leave no enabled admin account: nobody could then manage users from the pages. */
  private async keepAnAdmin(user: StoredUser, change: string): Promise<void> {
    if (!user.roles.includes('admin') || user.disabledAt !== null) return;
    const others = (await this.records.users()).filter((u) => u.id !== user.id && u.disabledAt === null && u.roles.includes('admin'));
    if (others.length === 0) throw new HttpError(409, 'last-admin', `${user.login} is the only enabled administrator: make another one first, then ${change} ${user.login}`);
  }

  private async known(login: string): Promise<StoredUser> {
    const user = await this.records.userByLogin(login);
    if (!user) throw new NotFound(`no user is named "${login}"; \`users list\` shows them`);
    return user;
  }
}

/** How an account stands, in the words the command line and the users page show. */
export function userStatus(user: UserRecord, now = Date.now()): 'disabled' | 'locked' | 'must change password' | 'active' {
  if (user.disabledAt !== null) return 'disabled';
  if (user.lockedUntil !== null && user.lockedUntil > now) return 'locked';
  return user.mustChangePassword ? 'must change password' : 'active';
}

function userRoles(roles: readonly string[]): Role[] {
  if (roles.length === 0 || roles.some((r) => !(USER_ROLES as readonly string[]).includes(r))) throw new BadRequest(`a user's roles are one or more of ${USER_ROLES.join(', ')}`);
  return USER_ROLES.filter((r) => roles.includes(r));
}

type FailureStreak = Pick<UserRecord, 'failedSignIns' | 'lockedUntil'>;

/**
 * Failed sign-ins under names no account has, counted as an account's are. In this process's memory only: at most
 * MAX_UNKNOWN_NAMES names, the longest untried going first, so that a flood of names cannot grow it.
 */
class UnknownNames {
  private readonly streaks = new Map<string, FailureStreak>();

  get(login: string): FailureStreak | undefined {
    return this.streaks.get(login);
  }

  set(login: string, streak: FailureStreak): void {
    this.streaks.delete(login);
    this.streaks.set(login, streak);
    if (this.streaks.size > MAX_UNKNOWN_NAMES) this.streaks.delete(this.streaks.keys().next().value!);
  }
}

function checkStrength(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new BadRequest(`a password has at least ${MIN_PASSWORD_LENGTH} characters; a few words make one easy to remember`);
}

/** 15 random characters: shown once, typed once, then replaced by the user's own. */
function oneTimePassword(): string {
  return randomBytes(12).toString('base64url').replace(/[-_]/g, 'x').slice(0, 15);
}

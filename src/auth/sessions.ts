import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from './principal.js';
import type { UserRecord, UserRecords } from './user-records.js';

export const SESSION_COOKIE = 'pacs_session';

/** The longest a session's last-seen time may lag: a session is written once in this span at most, not on every request. */
const TOUCH_EVERY_MS = 60_000;

/**
 * Signed-in browsers (issue 14): a session is 256 random bits in a cookie, kept in the index by its SHA-256, ended
 * after `idle` without a request, `maxAge` after sign-in, by sign-out, and at once when its user is disabled.
 */
export class Sessions {
  constructor(
    private readonly records: UserRecords,
    readonly settings: { idle: number; maxAge: number },
  ) {}

  async start(user: UserRecord): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    await this.records.addSession({ idHash: hashSession(id), userId: user.id, createdAt: now, lastSeenAt: now });
    return id;
  }

  /** The signed-in user a session id stands for, or undefined when it is unknown, expired or its user disabled. */
  async principalOf(id: string): Promise<(Principal & { kind: 'user' }) | undefined> {
    const idHash = hashSession(id);
    const found = await this.records.sessionUser(idHash);
    if (!found) return undefined;
    const { session, user } = found;
    const now = Date.now();
    if (user.disabledAt !== null || now - session.createdAt >= this.settings.maxAge || now - session.lastSeenAt >= this.settings.idle) {
      await this.records.deleteSession(idHash);
      return undefined;
    }
    if (now - session.lastSeenAt >= Math.min(TOUCH_EVERY_MS, this.settings.idle / 4)) await this.records.touchSession(idHash, now);
    return userPrincipal(user);
  }

  end(id: string): Promise<void> {
    return this.records.deleteSession(hashSession(id));
  }
}

/** The principal of a signed-in user. */
export function userPrincipal(user: UserRecord): Principal & { kind: 'user' } {
  // Until the one-time password is replaced, the user may do nothing but replace it.
  return { kind: 'user', id: user.id, login: user.login, roles: user.mustChangePassword ? [] : user.roles, mustChangePassword: user.mustChangePassword };
}

function hashSession(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

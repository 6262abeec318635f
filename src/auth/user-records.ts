import type { Role } from './principal.js';

/** A member of staff who signs in (issue 14); times in milliseconds since the epoch. */
export type UserRecord = {
  id: string;
  login: string;
  displayName: string;
  roles: Role[];
  mustChangePassword: boolean;
  createdAt: number;
  disabledAt: number | null;
  failedSignIns: number;
  lockedUntil: number | null;
  lastSignInAt: number | null;
};

export type StoredUser = UserRecord & { passwordHash: string };

/** What may change of an account after it is made. */
export type UserChange = Partial<Pick<StoredUser, 'roles' | 'passwordHash' | 'mustChangePassword' | 'disabledAt' | 'failedSignIns' | 'lockedUntil' | 'lastSignInAt'>>;

/** A session as kept: by the SHA-256 of its id, never the id. */
export type SessionRecord = { idHash: string; userId: string; createdAt: number; lastSeenAt: number };

/** Where accounts and sessions are kept: in the index's database, so that every replica knows them. */
export interface UserRecords {
  countUsers(): Promise<number>;
  /** False when the login is taken. */
  addUser(user: StoredUser): Promise<boolean>;
  userByLogin(login: string): Promise<StoredUser | undefined>;
  users(): Promise<UserRecord[]>;
  /** False when no user has that id. */
  updateUser(id: string, change: UserChange): Promise<boolean>;
  addSession(session: SessionRecord): Promise<void>;
  /** The session and its user, in one read: asked on every request made with a session. */
  sessionUser(idHash: string): Promise<{ session: SessionRecord; user: UserRecord } | undefined>;
  touchSession(idHash: string, at: number): Promise<void>;
  deleteSession(idHash: string): Promise<void>;
  /** Ends every session of the user (disabled, password changed or reset). */
  deleteUserSessions(userId: string): Promise<void>;
}

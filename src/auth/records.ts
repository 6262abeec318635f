import type { Role } from './principal.js';

export type ApiKeyRecord = {
  id: string;
  name: string;
  role: Role;
  hint: string;
  /** Milliseconds since the epoch, like every time here but a token's own claims. */
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
};

export type AuditEvent = {
  at: number;
  /** `key:<id>`, `token:<jti>`, `anonymous`, or `none` when no credential was accepted. */
  credential: string;
  ip: string | null;
  method: string;
  path: string;
  query: string | null;
  studyUid: string | null;
  seriesUid: string | null;
  sopUid: string | null;
  status: number;
  requestId: string;
};

/** A key as kept: what lets it be carried to another index (`migrate`) with the hash it is recognised by. */
export type StoredApiKey = ApiKeyRecord & { keyHash: string };
export type RevokedToken = { jti: string; expiresAt: number; revokedAt: number };
/** Tokens of the study issued at or before `issuedBefore` (seconds) are revoked. */
export type StudyRevocation = { studyUid: string; issuedBefore: number };
export type Revocations = { tokens: RevokedToken[]; studies: StudyRevocation[] };

export type AuditFilter = { studyUid?: string; credential?: string; since?: number; until?: number; limit: number };

/** Where keys, revocations and the audit trail are kept: beside the index, in the same database. */
export interface AccessRecords {
  addKey(key: ApiKeyRecord, keyHash: string): Promise<void>;
  keyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  keys(): Promise<ApiKeyRecord[]>;
  /** False when no key has that id. */
  revokeKey(id: string, at: number): Promise<boolean>;
  revokeToken(jti: string, expiresAt: number, at: number): Promise<void>;
  revokeStudyTokens(studyUid: string, issuedBefore: number): Promise<void>;
  /** Whether a token was revoked by its jti or with every token of its study; issuedAt in seconds. */
  isTokenRevoked(jti: string, studyUid: string, issuedAt: number): Promise<boolean>;
  appendAudit(events: AuditEvent[]): Promise<void>;
  /** Newest first. */
  audit(filter: AuditFilter): Promise<AuditEvent[]>;

  // Carrying access to another index (`migrate`): read everything here, merge it there. Merging again adds nothing.
  storedKeys(): Promise<StoredApiKey[]>;
  /**
   * Adds the keys this index lacks (by id or hash) and revokes here those revoked there; a key known to both keeps
   * its row otherwise. Resolves with how many were added and how many revoked.
   */
  mergeKeys(keys: StoredApiKey[]): Promise<{ added: number; revoked: number }>;
  revocations(): Promise<Revocations>;
  /** Adds token revocations this index lacks; a study's revocation keeps the later of the two dates. Resolves with how many changed. */
  mergeRevocations(revocations: Revocations): Promise<number>;
  /** Audit events after the one with id `afterId`, in the order they were written (by id), `limit` at most. */
  auditAfter(afterId: number, limit: number): Promise<Array<AuditEvent & { id: number }>>;
  /** Appends the events this index does not hold yet (the same in every field), in one transaction; resolves with how many. */
  mergeAudit(events: AuditEvent[]): Promise<number>;
}

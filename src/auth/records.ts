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
}

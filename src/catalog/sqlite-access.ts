import { and, asc, desc, eq, getTableColumns, gt, gte, isNull, lt, lte, sql } from 'drizzle-orm';
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import type { Role } from '../auth/principal.js';
import type { AccessRecords, ApiKeyRecord, AuditEvent, AuditFilter, Revocations, StoredApiKey } from '../auth/records.js';
import { auditWhere } from './audit-filter.js';
import { eventsMissing, spanOf } from './audit-merge.js';
import * as schema from './schema.sqlite.js';

const { apiKeys, revokedTokens, studyTokenRevocations, auditEvents } = schema;

const { id: _id, ...AUDIT_COLUMNS } = getTableColumns(auditEvents);

const KEY_COLUMNS = {
  id: apiKeys.id,
  name: apiKeys.name,
  role: apiKeys.role,
  hint: apiKeys.hint,
  createdAt: apiKeys.createdAt,
  expiresAt: apiKeys.expiresAt,
  revokedAt: apiKeys.revokedAt,
};

/** Keys, revocations and the audit trail, in the index's SQLite database. */
export class SqliteAccessRecords implements AccessRecords {
  // Asked on every request: prepared once, as building the query each time cost more than running it.
  private readonly keyByHashQuery;
  private readonly revokedQuery;

  constructor(private readonly db: BetterSQLite3Database<typeof schema>) {
    this.keyByHashQuery = db.select(KEY_COLUMNS).from(apiKeys).where(eq(apiKeys.keyHash, sql.placeholder('keyHash'))).prepare();
    this.revokedQuery = db
      .select({
        revoked: sql<number>`EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ${sql.placeholder('jti')})
          OR EXISTS (SELECT 1 FROM study_token_revocations WHERE study_uid = ${sql.placeholder('studyUid')} AND issued_before >= ${sql.placeholder('issuedAt')})`,
      })
      .from(sql`(SELECT 1)`)
      .prepare();
  }

  async addKey(key: ApiKeyRecord, keyHash: string): Promise<void> {
    this.db.insert(apiKeys).values({ ...key, keyHash }).run();
  }

  async keyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    return this.keyByHashQuery.get({ keyHash }) as ApiKeyRecord | undefined;
  }

  async keys(): Promise<ApiKeyRecord[]> {
    return this.db.select(KEY_COLUMNS).from(apiKeys).orderBy(apiKeys.createdAt).all() as Array<ApiKeyRecord & { role: Role }>;
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    const exists = this.db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.id, id)).get();
    this.db.update(apiKeys).set({ revokedAt: at }).where(and(eq(apiKeys.id, id), sql`${apiKeys.revokedAt} IS NULL`)).run();
    return exists !== undefined;
  }

  async revokeToken(jti: string, expiresAt: number, at: number): Promise<void> {
    this.db.transaction((tx) => {
      tx.delete(revokedTokens).where(lt(revokedTokens.expiresAt, at)).run();
      tx.insert(revokedTokens).values({ jti, expiresAt, revokedAt: at }).onConflictDoNothing().run();
    });
  }

  async revokeStudyTokens(studyUid: string, issuedBefore: number): Promise<void> {
    this.db
      .insert(studyTokenRevocations)
      .values({ studyUid, issuedBefore })
      .onConflictDoUpdate({ target: studyTokenRevocations.studyUid, set: { issuedBefore } })
      .run();
  }

  async isTokenRevoked(jti: string, studyUid: string, issuedAt: number): Promise<boolean> {
    const row = this.revokedQuery.get({ jti, studyUid, issuedAt })!;
    return row.revoked === 1;
  }

  async appendAudit(events: AuditEvent[]): Promise<void> {
    // SQLite binds at most 32766 parameters: 12 columns a row.
    this.db.transaction((tx) => {
      for (let i = 0; i < events.length; i += 2000) tx.insert(auditEvents).values(events.slice(i, i + 2000)).run();
    });
  }

  async audit(filter: AuditFilter): Promise<AuditEvent[]> {
    return this.db
      .select(AUDIT_COLUMNS)
      .from(auditEvents)
      .where(auditWhere(filter, auditEvents))
      .orderBy(desc(auditEvents.at), desc(auditEvents.id))
      .limit(filter.limit)
      .all();
  }

  async storedKeys(): Promise<StoredApiKey[]> {
    return this.db.select().from(apiKeys).orderBy(apiKeys.createdAt).all() as StoredApiKey[];
  }

  async mergeKeys(keys: StoredApiKey[]): Promise<{ added: number; revoked: number }> {
    return this.db.transaction((tx) => {
      let added = 0;
      let revoked = 0;
      for (const key of keys) {
        // Without a target: neither a key of the same id nor one of the same hash is added twice.
        added += tx.insert(apiKeys).values(key).onConflictDoNothing().run().changes;
        if (key.revokedAt === null) continue;
        revoked += tx.update(apiKeys).set({ revokedAt: key.revokedAt }).where(and(eq(apiKeys.keyHash, key.keyHash), isNull(apiKeys.revokedAt))).run().changes;
      }
      return { added, revoked };
    });
  }

  async revocations(): Promise<Revocations> {
    return { tokens: this.db.select().from(revokedTokens).all(), studies: this.db.select().from(studyTokenRevocations).all() };
  }

  async mergeRevocations({ tokens, studies }: Revocations): Promise<number> {
    return this.db.transaction((tx) => {
      let changed = 0;
      for (const token of tokens) changed += tx.insert(revokedTokens).values(token).onConflictDoNothing().run().changes;
      for (const study of studies) {
        changed += tx
          .insert(studyTokenRevocations)
          .values(study)
          .onConflictDoUpdate({ target: studyTokenRevocations.studyUid, set: { issuedBefore: study.issuedBefore }, setWhere: lt(studyTokenRevocations.issuedBefore, study.issuedBefore) })
          .run().changes;
      }
      return changed;
    });
  }

  async auditAfter(afterId: number, limit: number): Promise<Array<AuditEvent & { id: number }>> {
    return this.db.select().from(auditEvents).where(gt(auditEvents.id, afterId)).orderBy(asc(auditEvents.id)).limit(limit).all();
  }

  async mergeAudit(events: AuditEvent[]): Promise<number> {
    if (events.length === 0) return 0;
    const { from, to } = spanOf(events);
    return this.db.transaction((tx) => {
      const present = tx.select(AUDIT_COLUMNS).from(auditEvents).where(and(gte(auditEvents.at, from), lte(auditEvents.at, to))).all();
      const missing = eventsMissing(events, present);
      for (let i = 0; i < missing.length; i += 2000) tx.insert(auditEvents).values(missing.slice(i, i + 2000)).run();
      return missing.length;
    });
  }
}

import { and, asc, desc, eq, getTableColumns, gt, gte, isNull, lt, lte, sql } from 'drizzle-orm';
import type { AccessRecords, ApiKeyRecord, AuditEvent, AuditFilter, Revocations, StoredApiKey } from '../auth/records.js';
import { auditWhere } from './audit-filter.js';
import { eventsMissing, spanOf } from './audit-merge.js';
import { orUnavailable, type Db } from './pg-pool.js';
import * as schema from './schema.pg.js';

const { apiKeys, revokedTokens, studyTokenRevocations, auditEvents } = schema;

const { keyHash: _keyHash, ...KEY_COLUMNS } = getTableColumns(apiKeys);
const { id: _id, ...AUDIT_COLUMNS } = getTableColumns(auditEvents);

/** Keys, revocations and the audit trail, in the index's Postgres database; what SqliteAccessRecords does there. */
export class PgAccessRecords implements AccessRecords {
  constructor(
    private readonly db: Db,
    private readonly transaction: <T>(work: (tx: Db) => Promise<T>) => Promise<T>,
  ) {}

  async addKey(key: ApiKeyRecord, keyHash: string): Promise<void> {
    await orUnavailable(this.db.insert(apiKeys).values({ ...key, keyHash }));
  }

  async keyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const [key] = await orUnavailable(this.db.select(KEY_COLUMNS).from(apiKeys).where(eq(apiKeys.keyHash, keyHash)));
    return key as ApiKeyRecord | undefined;
  }

  async keys(): Promise<ApiKeyRecord[]> {
    return (await orUnavailable(this.db.select(KEY_COLUMNS).from(apiKeys).orderBy(apiKeys.createdAt))) as ApiKeyRecord[];
  }

  async revokeKey(id: string, at: number): Promise<boolean> {
    // Revoking a revoked key keeps its first date, and is still an answer of "known".
    await orUnavailable(this.db.update(apiKeys).set({ revokedAt: at }).where(and(eq(apiKeys.id, id), sql`${apiKeys.revokedAt} IS NULL`)));
    const [known] = await orUnavailable(this.db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.id, id)));
    return known !== undefined;
  }

  async revokeToken(jti: string, expiresAt: number, at: number): Promise<void> {
    await orUnavailable(
      this.transaction(async (tx) => {
        await tx.delete(revokedTokens).where(lt(revokedTokens.expiresAt, at));
        await tx.insert(revokedTokens).values({ jti, expiresAt, revokedAt: at }).onConflictDoNothing();
      }),
    );
  }

  async revokeStudyTokens(studyUid: string, issuedBefore: number): Promise<void> {
    await orUnavailable(
      this.db.insert(studyTokenRevocations).values({ studyUid, issuedBefore }).onConflictDoUpdate({ target: studyTokenRevocations.studyUid, set: { issuedBefore } }),
    );
  }

  async isTokenRevoked(jti: string, studyUid: string, issuedAt: number): Promise<boolean> {
    const { rows } = await orUnavailable(
      this.db.execute<{ revoked: boolean }>(sql`SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ${jti})
        OR EXISTS (SELECT 1 FROM study_token_revocations WHERE study_uid = ${studyUid} AND issued_before >= ${issuedAt}) AS revoked`),
    );
    return rows[0]!.revoked;
  }

  async appendAudit(events: AuditEvent[]): Promise<void> {
    // Postgres binds at most 65535 parameters: 12 columns a row.
    await orUnavailable(
      this.transaction(async (tx) => {
        for (let i = 0; i < events.length; i += 2000) await tx.insert(auditEvents).values(events.slice(i, i + 2000));
      }),
    );
  }

  async audit(filter: AuditFilter): Promise<AuditEvent[]> {
    return orUnavailable(
      this.db
        .select(AUDIT_COLUMNS)
        .from(auditEvents)
        .where(auditWhere(filter, auditEvents))
        .orderBy(desc(auditEvents.at), desc(auditEvents.id))
        .limit(filter.limit),
    );
  }

  async storedKeys(): Promise<StoredApiKey[]> {
    return (await orUnavailable(this.db.select().from(apiKeys).orderBy(apiKeys.createdAt))) as StoredApiKey[];
  }

  async mergeKeys(keys: StoredApiKey[]): Promise<{ added: number; revoked: number }> {
    return orUnavailable(
      this.transaction(async (tx) => {
        let added = 0;
        let revoked = 0;
        for (const key of keys) {
          // Without a target: neither a key of the same id nor one of the same hash is added twice.
          added += (await tx.insert(apiKeys).values(key).onConflictDoNothing()).rowCount ?? 0;
          if (key.revokedAt === null) continue;
          revoked += (await tx.update(apiKeys).set({ revokedAt: key.revokedAt }).where(and(eq(apiKeys.keyHash, key.keyHash), isNull(apiKeys.revokedAt)))).rowCount ?? 0;
        }
        return { added, revoked };
      }),
    );
  }

  async revocations(): Promise<Revocations> {
    const [tokens, studies] = await Promise.all([orUnavailable(this.db.select().from(revokedTokens)), orUnavailable(this.db.select().from(studyTokenRevocations))]);
    return { tokens, studies };
  }

  async mergeRevocations({ tokens, studies }: Revocations): Promise<number> {
    return orUnavailable(
      this.transaction(async (tx) => {
        let changed = 0;
        for (const token of tokens) changed += (await tx.insert(revokedTokens).values(token).onConflictDoNothing()).rowCount ?? 0;
        for (const study of studies) {
          const upsert = tx
            .insert(studyTokenRevocations)
            .values(study)
            .onConflictDoUpdate({ target: studyTokenRevocations.studyUid, set: { issuedBefore: study.issuedBefore }, setWhere: lt(studyTokenRevocations.issuedBefore, study.issuedBefore) });
          changed += (await upsert).rowCount ?? 0;
        }
        return changed;
      }),
    );
  }

  async auditAfter(afterId: number, limit: number): Promise<Array<AuditEvent & { id: number }>> {
    return orUnavailable(this.db.select().from(auditEvents).where(gt(auditEvents.id, afterId)).orderBy(asc(auditEvents.id)).limit(limit));
  }

  async mergeAudit(events: AuditEvent[]): Promise<number> {
    if (events.length === 0) return 0;
    const { from, to } = spanOf(events);
    return orUnavailable(
      this.transaction(async (tx) => {
        const present = await tx.select(AUDIT_COLUMNS).from(auditEvents).where(and(gte(auditEvents.at, from), lte(auditEvents.at, to)));
        const missing = eventsMissing(events, present);
        for (let i = 0; i < missing.length; i += 2000) await tx.insert(auditEvents).values(missing.slice(i, i + 2000));
        return missing.length;
      }),
    );
  }
}

import { and, asc, desc, eq, gt, gte, isNull, lt, lte, sql, type SQL } from 'drizzle-orm';
import type { AccessRecords, ApiKeyRecord, AuditEvent, AuditFilter, RevokedToken, Revocations, StoredApiKey, StudyRevocation } from '../auth/records.js';
import { auditWhere } from './audit-filter.js';
import { eventsMissing, spanOf } from './audit-merge.js';
import { execute, fetchRows, type Plan } from './plan.js';
import { assignments, changed, columnsOf, fromExcluded, insertInto, select, Selection, type Run, type TableOf } from './sql-rows.js';

/** The access tables of schema.sqlite.ts or schema.pg.ts. */
export type AccessTables = {
  apiKeys: TableOf<StoredApiKey>;
  revokedTokens: TableOf<RevokedToken>;
  studyTokenRevocations: TableOf<StudyRevocation>;
  auditEvents: TableOf<AuditEvent & { id: number }>;
};

/**
 * Keys, revocations and the audit trail, in the index's database, written once for both dialects: each dialect
 * hands its own tables (whose columns decode what its driver answers) and how a plan runs, read or in one transaction.
 */
export class SqlAccessRecords implements AccessRecords {
  private readonly keyColumns;
  private readonly auditColumns;
  // Asked on every request: built once, as building the query each time cost more than running it.
  private readonly keyByHashQuery: Selection<ApiKeyRecord>;
  private readonly revokedQuery: SQL;

  constructor(
    private readonly t: AccessTables,
    private readonly read: Run,
    private readonly transact: Run,
  ) {
    const { keyHash: _keyHash, ...key } = columnsOf<StoredApiKey>(t.apiKeys);
    const { id: _id, ...audit } = columnsOf<AuditEvent & { id: number }>(t.auditEvents);
    this.keyColumns = key;
    this.auditColumns = audit;
    this.keyByHashQuery = new Selection(key, sql`FROM ${t.apiKeys} WHERE ${eq(t.apiKeys.keyHash, sql.placeholder('keyHash'))}`);
    const { revokedTokens: tokens, studyTokenRevocations: studies } = t;
    this.revokedQuery = sql`SELECT (EXISTS (SELECT 1 FROM ${tokens} WHERE ${eq(tokens.jti, sql.placeholder('jti'))})
      OR EXISTS (SELECT 1 FROM ${studies} WHERE ${and(eq(studies.studyUid, sql.placeholder('studyUid')), gte(studies.issuedBefore, sql.placeholder('issuedAt')))})) AS revoked`;
  }

  async addKey(key: ApiKeyRecord, keyHash: string): Promise<void> {
    await this.transact(insertInto(this.t.apiKeys, [{ ...key, keyHash }]));
  }

  async keyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const [key] = await this.read(this.keyByHashQuery.rows({ keyHash }));
    return key;
  }

  keys(): Promise<ApiKeyRecord[]> {
    return this.read(select<ApiKeyRecord>(this.keyColumns, sql`FROM ${this.t.apiKeys} ORDER BY ${this.t.apiKeys.createdAt}`));
  }

  revokeKey(id: string, at: number): Promise<boolean> {
    const { apiKeys } = this.t;
    return this.transact(
      (function* () {
        // Revoking a revoked key keeps its first date, and is still an answer of "known".
        yield* changed(sql`UPDATE ${apiKeys} SET ${assignments(apiKeys, { revokedAt: at })} WHERE ${and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))}`, apiKeys.id);
        const known = yield* fetchRows(sql`SELECT 1 FROM ${apiKeys} WHERE ${eq(apiKeys.id, id)}`);
        return known.length > 0;
      })(),
    );
  }

  revokeToken(jti: string, expiresAt: number, at: number): Promise<void> {
    const { revokedTokens } = this.t;
    return this.transact(
      (function* () {
        yield* execute(sql`DELETE FROM ${revokedTokens} WHERE ${lt(revokedTokens.expiresAt, at)}`);
        yield* insertInto(revokedTokens, [{ jti, expiresAt, revokedAt: at }], sql`ON CONFLICT DO NOTHING`);
      })(),
    );
  }

  async revokeStudyTokens(studyUid: string, issuedBefore: number): Promise<void> {
    await this.transact(upsertRevocation(this.t.studyTokenRevocations, { studyUid, issuedBefore }, false));
  }

  async isTokenRevoked(jti: string, studyUid: string, issuedAt: number): Promise<boolean> {
    const [row] = await this.read(fetchRows<{ revoked: boolean | number }>(this.revokedQuery, { jti, studyUid, issuedAt }));
    // SQLite answers a truth value as 1 or 0.
    return Boolean(row!.revoked);
  }

  async appendAudit(events: AuditEvent[]): Promise<void> {
    await this.transact(insertInto(this.t.auditEvents, events));
  }

  audit(filter: AuditFilter): Promise<AuditEvent[]> {
    const { auditEvents } = this.t;
    const where = auditWhere(filter, auditEvents);
    return this.read(
      select<AuditEvent>(this.auditColumns, sql`FROM ${auditEvents} ${where ? sql`WHERE ${where}` : sql``}
        ORDER BY ${desc(auditEvents.at)}, ${desc(auditEvents.id)} LIMIT ${filter.limit}`),
    );
  }

  storedKeys(): Promise<StoredApiKey[]> {
    return this.read(select<StoredApiKey>(columnsOf(this.t.apiKeys), sql`FROM ${this.t.apiKeys} ORDER BY ${this.t.apiKeys.createdAt}`));
  }

  mergeKeys(keys: StoredApiKey[]): Promise<{ added: number; revoked: number }> {
    const { apiKeys } = this.t;
    return this.transact(
      (function* () {
        let added = 0;
        let revoked = 0;
        for (const key of keys) {
          // Without a target: neither a key of the same id nor one of the same hash is added twice.
          added += yield* insertInto(apiKeys, [key], sql`ON CONFLICT DO NOTHING`);
          if (key.revokedAt === null) continue;
          revoked += yield* changed(
            sql`UPDATE ${apiKeys} SET ${assignments(apiKeys, { revokedAt: key.revokedAt })} WHERE ${and(eq(apiKeys.keyHash, key.keyHash), isNull(apiKeys.revokedAt))}`,
            apiKeys.id,
          );
        }
        return { added, revoked };
      })(),
    );
  }

  revocations(): Promise<Revocations> {
    const { revokedTokens, studyTokenRevocations } = this.t;
    return this.read(
      (function* () {
        const tokens = yield* select<RevokedToken>(columnsOf(revokedTokens), sql`FROM ${revokedTokens}`);
        const studies = yield* select<StudyRevocation>(columnsOf(studyTokenRevocations), sql`FROM ${studyTokenRevocations}`);
        return { tokens, studies };
      })(),
    );
  }

  mergeRevocations({ tokens, studies }: Revocations): Promise<number> {
    const { revokedTokens, studyTokenRevocations } = this.t;
    return this.transact(
      (function* () {
        let count = 0;
        for (const token of tokens) count += yield* insertInto(revokedTokens, [token], sql`ON CONFLICT DO NOTHING`);
        for (const study of studies) count += yield* upsertRevocation(studyTokenRevocations, study, true);
        return count;
      })(),
    );
  }

  auditAfter(afterId: number, limit: number): Promise<Array<AuditEvent & { id: number }>> {
    const { auditEvents } = this.t;
    return this.read(
      select<AuditEvent & { id: number }>(columnsOf(auditEvents), sql`FROM ${auditEvents} WHERE ${gt(auditEvents.id, afterId)} ORDER BY ${asc(auditEvents.id)} LIMIT ${limit}`),
    );
  }

  async mergeAudit(events: AuditEvent[]): Promise<number> {
    if (events.length === 0) return 0;
    const { from, to } = spanOf(events);
    const { auditEvents } = this.t;
    const columns = this.auditColumns;
    return this.transact(
      (function* () {
        const present = yield* select<AuditEvent>(columns, sql`FROM ${auditEvents} WHERE ${and(gte(auditEvents.at, from), lte(auditEvents.at, to))}`);
        const missing = eventsMissing(events, present);
        yield* insertInto(auditEvents, missing);
        return missing.length;
      })(),
    );
  }
}

/** A study's revocation, set or moved later; with `onlyLater`, an earlier date leaves the row as it is. Resolves with the rows changed. */
function upsertRevocation(table: AccessTables['studyTokenRevocations'], row: StudyRevocation, onlyLater: boolean): Plan<number> {
  return insertInto(
    table,
    [row],
    sql`ON CONFLICT (${sql.identifier(table.studyUid.name)}) DO UPDATE SET ${fromExcluded(table, ['issuedBefore'])} ${onlyLater ? sql`WHERE ${lt(table.issuedBefore, row.issuedBefore)}` : sql``}`,
  );
}

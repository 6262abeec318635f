import { and, asc, desc, eq, getTableColumns, gt, gte, isNull, lt, lte, sql, type Column, type SQL, type Table } from 'drizzle-orm';
import type { AccessRecords, ApiKeyRecord, AuditEvent, AuditFilter, RevokedToken, Revocations, StoredApiKey, StudyRevocation } from '../auth/records.js';
import { auditWhere } from './audit-filter.js';
import { eventsMissing, spanOf } from './audit-merge.js';
import { execute, fetchRows, type Plan } from './plan.js';

/** A table of either dialect's schema with the columns named (test/unit/schema-parity.test.ts keeps the two alike). */
type TableOf<Row> = Table & { [K in keyof Row]: Column };

/** The access tables of schema.sqlite.ts or schema.pg.ts. */
export type AccessTables = {
  apiKeys: TableOf<StoredApiKey>;
  revokedTokens: TableOf<RevokedToken>;
  studyTokenRevocations: TableOf<StudyRevocation>;
  auditEvents: TableOf<AuditEvent & { id: number }>;
};

type Run = <T>(plan: Plan<T>) => Promise<T>;

/** SQLite binds at most 32766 parameters, Postgres 65535: 11 columns a row. */
const AUDIT_ROWS = 2000;

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
        yield* changed(sql`UPDATE ${apiKeys} SET ${sql.identifier(apiKeys.revokedAt.name)} = ${at} WHERE ${and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))}`, apiKeys.id);
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
            sql`UPDATE ${apiKeys} SET ${sql.identifier(apiKeys.revokedAt.name)} = ${key.revokedAt} WHERE ${and(eq(apiKeys.keyHash, key.keyHash), isNull(apiKeys.revokedAt))}`,
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
  const issuedBefore = sql.identifier(table.issuedBefore.name);
  return insertInto(
    table,
    [row],
    sql`ON CONFLICT (${sql.identifier(table.studyUid.name)}) DO UPDATE SET ${issuedBefore} = excluded.${issuedBefore} ${onlyLater ? sql`WHERE ${lt(table.issuedBefore, row.issuedBefore)}` : sql``}`,
  );
}

/** The columns of a table by their schema names, the keys its rows are read and written with. */
function columnsOf<Row>(table: TableOf<Row>): { [K in keyof Row]: Column } {
  return getTableColumns(table) as { [K in keyof Row]: Column };
}

/** SELECT of these columns, each named by its key and decoded as its dialect's driver requires (Postgres gives bigint as text). */
class Selection<Row> {
  private readonly entries: Array<[string, Column]>;
  private readonly query: SQL;

  constructor(columns: Record<string, Column>, rest: SQL) {
    this.entries = Object.entries(columns);
    this.query = sql`SELECT ${sql.join(this.entries.map(([key, column]) => sql`${column} AS ${sql.identifier(key)}`), sql`, `)} ${rest}`;
  }

  /** With values, the query's placeholders are filled and it is prepared once. */
  *rows(values?: Record<string, unknown>): Plan<Row[]> {
    const rows = yield* fetchRows<Record<string, unknown>>(this.query, values);
    for (const row of rows) for (const [key, column] of this.entries) if (row[key] !== null) row[key] = column.mapFromDriverValue(row[key]);
    return rows as Row[];
  }
}

function select<Row>(columns: Record<string, Column>, rest: SQL): Plan<Row[]> {
  return new Selection<Row>(columns, rest).rows();
}

/** A multi-row INSERT of these rows (keys as the table's columns), in chunks; resolves with the rows inserted. */
function* insertInto<Row extends object>(table: TableOf<Row>, rows: Row[], onConflict: SQL = sql``): Plan<number> {
  if (rows.length === 0) return 0;
  const columns = Object.entries(columnsOf<Row>(table)).filter(([key]) => key in rows[0]!) as Array<[keyof Row, Column]>;
  const names = sql.join(columns.map(([, c]) => sql.identifier(c.name)), sql`, `);
  let inserted = 0;
  for (let i = 0; i < rows.length; i += AUDIT_ROWS) {
    const values = rows.slice(i, i + AUDIT_ROWS).map((row) => sql`(${sql.join(columns.map(([key, c]) => sql.param(row[key], c)), sql`, `)})`);
    inserted += yield* changed(sql`INSERT INTO ${table} (${names}) VALUES ${sql.join(values, sql`, `)} ${onConflict}`, columns[0]![1]);
  }
  return inserted;
}

/** How many rows a write changed: counted by RETURNING, which both dialects speak, rather than by each driver's own count. */
function* changed(statement: SQL, anyColumn: Column): Plan<number> {
  return (yield* fetchRows(sql`${statement} RETURNING ${sql.identifier(anyColumn.name)}`)).length;
}

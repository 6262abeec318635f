import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { eq, inArray, sql, type SQL } from 'drizzle-orm';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import type { Catalog, IndexOutcome, InstanceRow, Removal, Scope, SeriesRow, StoredInstance, StudyRow } from './catalog.js';
import { whereClauses, type QidoQuery } from './qido.js';
import { rowsOf, type IndexRecord } from './record.js';
import type { AccessRecords } from '../auth/records.js';
import * as schema from './schema.sqlite.js';
import { SqliteAccessRecords } from './sqlite-access.js';

const MIGRATIONS = fileURLToPath(new URL('../../migrations/sqlite', import.meta.url));

export class SqliteCatalog implements Catalog {
  private readonly sqlite: Database.Database;
  private readonly db: BetterSQLite3Database<typeof schema>;

  constructor(file: string) {
    this.sqlite = new Database(file);
    // WAL lets readers run beside the writer; FULL makes an acknowledged commit survive power loss.
    this.sqlite.pragma('journal_mode = WAL');
    this.sqlite.pragma('synchronous = FULL');
    this.sqlite.pragma('busy_timeout = 10000');
    // QIDO wildcards are case-sensitive outside person names (PS3.4 C.2.2.2.4), as LIKE is in Postgres.
    this.sqlite.pragma('case_sensitive_like = ON');
    this.db = drizzle(this.sqlite, { schema });
    migrate(this.db, { migrationsFolder: MIGRATIONS });
  }

  /** Keys, revocations and the audit trail live in the same database. */
  access(): AccessRecords {
    return new SqliteAccessRecords(this.db);
  }

  static open(storageDir: string): SqliteCatalog {
    return new SqliteCatalog(path.join(storageDir, 'index.sqlite'));
  }

  async checksumsOf(sopUids: string[]): Promise<Map<string, string>> {
    if (sopUids.length === 0) return new Map();
    const rows = this.db
      .select({ sopUid: schema.instances.sopUid, sha256: schema.instances.sha256 })
      .from(schema.instances)
      .where(inArray(schema.instances.sopUid, sopUids))
      .all();
    return new Map(rows.map((r) => [r.sopUid, r.sha256]));
  }

  async index(records: IndexRecord[], overwrite: boolean): Promise<IndexOutcome[]> {
    const { studies, series, instances } = schema;
    return this.db.transaction((tx) => {
      const known = new Map(
        tx
          .select({ sopUid: instances.sopUid, sha256: instances.sha256 })
          .from(instances)
          .where(inArray(instances.sopUid, records.map((r) => r.sopUid)))
          .all()
          .map((r) => [r.sopUid, r.sha256]),
      );
      const outcomes: IndexOutcome[] = [];
      const fresh: IndexRecord[] = [];
      const replaced: IndexRecord[] = [];
      for (const record of records) {
        const existing = known.get(record.sopUid);
        if (existing === record.sha256) outcomes.push('duplicate');
        else if (existing !== undefined && !overwrite) outcomes.push('conflict');
        else {
          (existing === undefined ? fresh : replaced).push(record);
          known.set(record.sopUid, record.sha256); // the same instance twice in one batch is stored once
          outcomes.push('stored');
        }
      }
      const rows = [...fresh, ...replaced].map((r) => rowsOf(r));
      if (rows.length === 0) return outcomes;
      // One statement per level for the whole batch: building SQL per row cost more than running it.
      for (const chunk of chunks(rows, INSERT_CHUNK)) {
        tx.insert(studies).values(uniqueBy(chunk.map((r) => r.study), (s) => s.studyUid)).onConflictDoNothing().run();
        tx.insert(series).values(uniqueBy(chunk.map((r) => r.series), (s) => s.seriesUid)).onConflictDoNothing().run();
      }
      const freshRows = rows.slice(0, fresh.length);
      for (const chunk of chunks(freshRows, INSERT_CHUNK)) tx.insert(instances).values(chunk.map((r) => r.instance)).run();
      // A replaced instance (overwrite allowed) may carry corrected study and series attributes too.
      for (const row of rows.slice(fresh.length)) {
        tx.insert(studies).values(row.study).onConflictDoUpdate({ target: studies.studyUid, set: row.study }).run();
        tx.insert(series).values(row.series).onConflictDoUpdate({ target: series.seriesUid, set: row.series }).run();
        tx.insert(instances).values(row.instance).onConflictDoUpdate({ target: instances.sopUid, set: row.instance }).run();
      }
      recount(tx, new Set(rows.map((r) => r.series.seriesUid)), new Set(rows.map((r) => r.study.studyUid)));
      return outcomes;
    });
  }

  async remove(scope: Scope): Promise<Removal> {
    const { instances } = schema;
    // IMMEDIATE: the write lock is taken before the read, so another process cannot change the rows in between.
    return this.db.transaction(
      (tx) => {
        const doomed = tx.select({ seriesUid: instances.seriesUid, objectKey: instances.objectKey }).from(instances).where(inScope(scope)).all();
        if (doomed.length === 0) return { studies: 0, series: 0, instances: 0, objectKeys: [] };
        tx.delete(instances).where(inScope(scope)).run();
        const touchedSeries = new Set(doomed.map((r) => r.seriesUid));
        const touchedStudies = new Set([scope.studyUid]);
        const keptSeries = new Set<string>();
        for (const uid of touchedSeries) {
          const owner = tx.get<{ studyUid: string } | undefined>(sql`SELECT study_uid AS "studyUid" FROM series WHERE series_uid = ${uid}`);
          if (owner) touchedStudies.add(owner.studyUid);
          const gone = tx.run(sql`DELETE FROM series WHERE series_uid = ${uid} AND NOT EXISTS (SELECT 1 FROM instances WHERE series_uid = ${uid})`);
          if (gone.changes === 0) keptSeries.add(uid);
        }
        const keptStudies = new Set<string>();
        for (const uid of touchedStudies) {
          const gone = tx.run(sql`DELETE FROM studies WHERE study_uid = ${uid} AND NOT EXISTS (SELECT 1 FROM series WHERE study_uid = ${uid})`);
          if (gone.changes === 0) keptStudies.add(uid);
        }
        recount(tx, keptSeries, keptStudies);
        return {
          studies: touchedStudies.size - keptStudies.size,
          series: touchedSeries.size - keptSeries.size,
          instances: doomed.length,
          objectKeys: doomed.map((r) => r.objectKey),
        };
      },
      { behavior: 'immediate' },
    );
  }

  async studies(query: QidoQuery): Promise<StudyRow[]> {
    return this.db.all<StudyRow>(sql`
      SELECT ${sql.raw(studyColumns())} FROM studies ${where(whereClauses(query))}
      ORDER BY coalesce(studies.study_date, '') DESC, coalesce(studies.study_time, '') DESC, studies.study_uid
      LIMIT ${query.limit} OFFSET ${query.offset}`);
  }

  async series(query: QidoQuery): Promise<SeriesRow[]> {
    const rows = this.db.all<FlatSeriesRow>(sql`
      SELECT ${SERIES_COLUMNS}
      FROM series JOIN studies ON studies.study_uid = series.study_uid ${where(whereClauses(query))}
      ORDER BY series.study_uid, series.series_number IS NULL, series.series_number, series.series_uid
      LIMIT ${query.limit} OFFSET ${query.offset}`);
    return rows.map(nestSeries);
  }

  async instances(query: QidoQuery): Promise<InstanceRow[]> {
    const rows = this.db.all<FlatSeriesRow & { sopUid: string; instanceJson: string }>(sql`
      SELECT instances.json AS "instanceJson", instances.sop_uid AS "sopUid", ${SERIES_COLUMNS}
      FROM instances JOIN series ON series.series_uid = instances.series_uid
           JOIN studies ON studies.study_uid = instances.study_uid ${where(whereClauses(query))}
      ORDER BY instances.series_uid, instances.instance_number IS NULL, instances.instance_number, instances.sop_uid
      LIMIT ${query.limit} OFFSET ${query.offset}`);
    return rows.map((r) => ({ json: r.instanceJson, studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid, series: nestSeries(r) }));
  }

  async storedInstances(scope: Scope): Promise<StoredInstance[]> {
    return this.db.select(STORED_COLUMNS).from(schema.instances).where(inScope(scope)).orderBy(...INSTANCE_ORDER).all();
  }

  async representativeImage(scope: Omit<Scope, 'sopUid'>): Promise<StoredInstance | undefined> {
    const i = schema.instances;
    const isImage = sql`${i.rows} IS NOT NULL AND ${i.columns} IS NOT NULL`;
    // Both reads run in one synchronous stretch of this connection: no write of this process comes between.
    const first = this.db.get<{ seriesUid: string; images: number } | undefined>(sql`
      SELECT series.series_uid AS "seriesUid",
             (SELECT count(*) FROM instances WHERE instances.series_uid = series.series_uid AND ${isImage}) AS images
      FROM series
      WHERE series.study_uid = ${scope.studyUid} ${scope.seriesUid ? sql`AND series.series_uid = ${scope.seriesUid}` : sql``}
        AND EXISTS (SELECT 1 FROM instances WHERE instances.series_uid = series.series_uid AND ${isImage})
      ORDER BY series.series_number IS NULL, series.series_number, series.series_uid
      LIMIT 1`);
    if (!first) return undefined;
    // The middle as OHIF picks it for its own thumbnails: index ⌊n/2⌋.
    return this.db
      .select(STORED_COLUMNS)
      .from(i)
      .where(sql`${inScope({ studyUid: scope.studyUid, seriesUid: first.seriesUid })} AND ${isImage}`)
      .orderBy(...INSTANCE_ORDER)
      .limit(1)
      .offset(Math.floor(first.images / 2))
      .get();
  }

  async checksums(scope: Scope): Promise<string[]> {
    const i = schema.instances;
    const rows = this.db.select({ sha256: i.sha256 }).from(i).where(inScope(scope)).orderBy(...INSTANCE_ORDER).all();
    return rows.map((r) => r.sha256);
  }

  async *allObjects(): AsyncIterable<{ sopUid: string; objectKey: string; size: number; sha256: string }> {
    const statement = this.sqlite.prepare('SELECT sop_uid AS sopUid, object_key AS objectKey, size, sha256 FROM instances ORDER BY sop_uid');
    yield* statement.iterate() as Iterable<{ sopUid: string; objectKey: string; size: number; sha256: string }>;
  }

  async check(): Promise<void> {
    this.sqlite.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    this.sqlite.close();
  }
}

type Transaction = Parameters<Parameters<BetterSQLite3Database<typeof schema>['transaction']>[0]>[0];

/** The counts QIDO answers without counting (DESIGN decision 4), recomputed for the series and studies a write touched. */
function recount(tx: Transaction, seriesUids: Iterable<string>, studyUids: Iterable<string>): void {
  const { series } = schema;
  for (const uid of seriesUids) {
    tx.run(sql`UPDATE series SET num_instances = (SELECT count(*) FROM instances WHERE series_uid = ${uid}) WHERE series_uid = ${uid}`);
  }
  for (const uid of studyUids) {
    const modalities = tx
      .selectDistinct({ modality: series.modality })
      .from(series)
      .where(eq(series.studyUid, uid))
      .orderBy(series.modality)
      .all()
      .flatMap((r) => (r.modality ? [r.modality] : []));
    tx.run(sql`UPDATE studies SET
      num_series = (SELECT count(*) FROM series WHERE study_uid = ${uid}),
      num_instances = (SELECT count(*) FROM instances WHERE study_uid = ${uid}),
      modalities = ${modalities.join('\\')},
      updated_at = ${Date.now()}
      WHERE study_uid = ${uid}`);
  }
}

/** A study row's columns; beside a series row they are named `study.…` and nested by nestSeries. */
function studyColumns(prefix = ''): string {
  const as = (name: keyof StudyRow) => `"${prefix}${name}"`;
  return `studies.json AS ${as('json')}, studies.num_series AS ${as('numSeries')}, studies.num_instances AS ${as('numInstances')},
    studies.modalities AS ${as('modalities')}, studies.study_uid AS ${as('studyUid')}`;
}
const SERIES_COLUMNS = sql.raw(`series.json AS json, series.num_instances AS "numInstances", series.study_uid AS "studyUid",
  series.series_uid AS "seriesUid", ${studyColumns('study.')}`);

type FlatSeriesRow = Omit<SeriesRow, 'study'> & { [K in keyof StudyRow as `study.${K}`]: StudyRow[K] };

function nestSeries(r: FlatSeriesRow): SeriesRow {
  const study = { json: r['study.json'], numSeries: r['study.numSeries'], numInstances: r['study.numInstances'], modalities: r['study.modalities'], studyUid: r['study.studyUid'] };
  return { json: r.json, numInstances: r.numInstances, studyUid: r.studyUid, seriesUid: r.seriesUid, study };
}

const STORED_COLUMNS = {
  sopUid: schema.instances.sopUid, seriesUid: schema.instances.seriesUid, studyUid: schema.instances.studyUid,
  sopClassUid: schema.instances.sopClassUid, transferSyntaxUid: schema.instances.transferSyntaxUid,
  numberOfFrames: schema.instances.numberOfFrames, objectKey: schema.instances.objectKey, size: schema.instances.size,
  sha256: schema.instances.sha256, inflated: schema.instances.inflated, frames: schema.instances.frames, json: schema.instances.json,
};

const INSTANCE_ORDER = [schema.instances.seriesUid, sql`${schema.instances.instanceNumber} IS NULL`, schema.instances.instanceNumber, schema.instances.sopUid];

function inScope(scope: Scope): SQL {
  const i = schema.instances;
  const conditions: SQL[] = [sql`${i.studyUid} = ${scope.studyUid}`];
  if (scope.seriesUid) conditions.push(sql`${i.seriesUid} = ${scope.seriesUid}`);
  if (scope.sopUid) conditions.push(sql`${i.sopUid} = ${scope.sopUid}`);
  return sql.join(conditions, sql` AND `);
}

function where(conditions: SQL[]): SQL {
  return conditions.length ? sql`WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
}

/** Rows per multi-row INSERT, well inside SQLite's limit of bound parameters per statement. */
const INSERT_CHUNK = 500;

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/** The first item of each key: the first instance of a study or series in a batch describes it. */
function uniqueBy<T>(items: T[], key: (item: T) => string): T[] {
  const first = new Map<string, T>();
  for (const item of items) if (!first.has(key(item))) first.set(key(item), item);
  return [...first.values()];
}

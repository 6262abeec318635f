import { sql, type SQL } from 'drizzle-orm';
import type { Catalog, Damage, DamagedInstance, Indexed, IndexedObject, InstanceRow, IntegrityPasses, Removal, Scope, SeriesRow, StoredInstance, StudyRow } from './catalog.js';
import { decideUploads, outcomeOf } from './decision.js';
import { SqlIntegrityPasses } from './integrity-passes.js';
import { execute, fetchRows, insert, upsert, type Plan } from './plan.js';
import type { IndexTables } from './index-tables.js';
import { qidoConditions, type QidoQuery } from './qido.js';
import { rowsOf, type IndexRecord } from './record.js';

/**
 * The Catalog in SQL that SQLite and Postgres both speak, over the same tables (schema.sqlite.ts, schema.pg.ts).
 * A dialect says only how a plan runs: reads as they come, writes in one transaction as the index's only writer,
 * so that a write reads and then changes rows with no other write in between.
 */
export abstract class SqlCatalog implements Catalog {
  private readonly conditions;

  constructor(protected readonly t: IndexTables) {
    this.conditions = qidoConditions(t);
  }

  protected abstract read<T>(plan: Plan<T>): Promise<T>;
  protected abstract write<T>(plan: Plan<T>): Promise<T>;
  abstract withInstanceLocks<T>(sopUids: string[], work: () => Promise<T>): Promise<T>;
  abstract close(): Promise<void>;

  checksumsOf(sopUids: string[]): Promise<Map<string, string>> {
    return this.read(checksumsOf(sopUids));
  }

  index(records: IndexRecord[], overwrite: boolean): Promise<Indexed> {
    return this.write(indexing(records, overwrite));
  }

  remove(scope: Scope): Promise<Removal> {
    return this.write(removal(scope));
  }

  studies(query: QidoQuery): Promise<StudyRow[]> {
    return this.read(fetchRows<StudyRow>(sql`
      SELECT ${sql.raw(studyColumns())} FROM studies ${where(this.conditions(query))}
      ORDER BY coalesce(studies.study_date, '') DESC, coalesce(studies.study_time, '') DESC, studies.study_uid
      LIMIT ${query.limit} OFFSET ${query.offset}`));
  }

  async series(query: QidoQuery): Promise<SeriesRow[]> {
    const rows = await this.read(fetchRows<FlatSeriesRow>(sql`
      SELECT ${SERIES_COLUMNS}
      FROM series JOIN studies ON studies.study_uid = series.study_uid ${where(this.conditions(query))}
      ORDER BY series.study_uid, series.series_number IS NULL, series.series_number, series.series_uid
      LIMIT ${query.limit} OFFSET ${query.offset}`));
    return rows.map(nestSeries);
  }

  async instances(query: QidoQuery): Promise<InstanceRow[]> {
    const rows = await this.read(fetchRows<FlatSeriesRow & { sopUid: string; instanceJson: string }>(sql`
      SELECT instances.json AS "instanceJson", instances.sop_uid AS "sopUid", ${SERIES_COLUMNS}
      FROM instances JOIN series ON series.series_uid = instances.series_uid
           JOIN studies ON studies.study_uid = instances.study_uid ${where(this.conditions(query))}
      ORDER BY ${INSTANCE_ORDER}
      LIMIT ${query.limit} OFFSET ${query.offset}`));
    return rows.map((r) => ({ json: r.instanceJson, studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid, series: nestSeries(r) }));
  }

  async storedInstances(scope: Scope): Promise<StoredInstance[]> {
    const rows = await this.read(fetchRows<DriverStoredInstance>(sql`SELECT ${STORED_COLUMNS} FROM instances WHERE ${inScope(scope)} ORDER BY ${INSTANCE_ORDER}`));
    return rows.map(storedInstance);
  }

  representativeImage(scope: Omit<Scope, 'sopUid'>): Promise<StoredInstance | undefined> {
    return this.read(representativeImage(scope));
  }

  async checksums(scope: Scope): Promise<string[]> {
    const rows = await this.read(fetchRows<{ sha256: string }>(sql`SELECT instances.sha256 AS sha256 FROM instances WHERE ${inScope(scope)} ORDER BY ${INSTANCE_ORDER}`));
    return rows.map((r) => r.sha256);
  }

  async objectTotals(): Promise<{ instances: number; bytes: number }> {
    // Postgres answers count and sum of a bigint as text (they may outgrow a JS number; a clinic's store does not).
    const [row] = await this.read(fetchRows<{ instances: number | string; bytes: number | string | null }>(sql`SELECT count(*) AS instances, sum(size) AS bytes FROM instances`));
    return { instances: Number(row?.instances ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  /** A page at a time, by key: the index may be millions of rows, and it may change while this runs. */
  async *allObjects(after = ''): AsyncIterable<IndexedObject> {
    for (;;) {
      const page = await this.read(fetchRows<Omit<IndexedObject, 'size'> & { size: number | string }>(sql`
        SELECT sop_uid AS "sopUid", object_key AS "objectKey", size, sha256, damage FROM instances
        WHERE sop_uid > ${after} ORDER BY sop_uid LIMIT ${OBJECTS_PAGE}`));
      for (const row of page) yield { ...row, size: Number(row.size) };
      if (page.length < OBJECTS_PAGE) return;
      after = page.at(-1)!.sopUid;
    }
  }

  objectKeysOf(sopUids: string[]): Promise<Map<string, string>> {
    return this.read(
      (function* () {
        const keys = new Map<string, string>();
        for (const chunk of chunks(sopUids, CHUNK)) {
          const rows = yield* fetchRows<{ sopUid: string; objectKey: string }>(sql`SELECT sop_uid AS "sopUid", object_key AS "objectKey" FROM instances WHERE sop_uid IN ${list(chunk)}`);
          for (const r of rows) keys.set(r.sopUid, r.objectKey);
        }
        return keys;
      })(),
    );
  }

  markDamage(sopUid: string, sha256: string, damage: Damage | undefined): Promise<void> {
    return this.write(
      damage
        ? execute(sql`UPDATE instances SET damage = ${damage}, damage_found_at = ${Date.now()} WHERE sop_uid = ${sopUid} AND sha256 = ${sha256}`)
        : execute(sql`UPDATE instances SET damage = NULL, damage_found_at = NULL WHERE sop_uid = ${sopUid} AND sha256 = ${sha256} AND damage IS NOT NULL`),
    );
  }

  async damaged(limit: number): Promise<{ counts: Record<Damage, number>; instances: DamagedInstance[] }> {
    const counted = await this.read(fetchRows<{ damage: Damage; n: number | string }>(sql`SELECT damage, count(*) AS n FROM instances WHERE damage IS NOT NULL GROUP BY damage`));
    const rows = await this.read(fetchRows<Omit<DamagedInstance, 'foundAt'> & { foundAt: number | string }>(sql`
      SELECT study_uid AS "studyUid", series_uid AS "seriesUid", sop_uid AS "sopUid", object_key AS "objectKey", damage, damage_found_at AS "foundAt"
      FROM instances WHERE damage IS NOT NULL ORDER BY damage_found_at DESC, sop_uid LIMIT ${limit}`));
    const counts: Record<Damage, number> = { missing: 0, changed: 0 };
    for (const c of counted) counts[c.damage] = Number(c.n);
    return { counts, instances: rows.map((r) => ({ ...r, foundAt: Number(r.foundAt) })) };
  }

  passes(): IntegrityPasses {
    return new SqlIntegrityPasses(this.t.integrityPasses, (plan) => this.read(plan), (plan) => this.write(plan));
  }

  async check(): Promise<void> {
    await this.read(fetchRows(sql`SELECT 1`));
  }
}

const OBJECTS_PAGE = 1000;
/** Rows per multi-row INSERT and UIDs per IN list, well inside either dialect's limit of bound parameters. */
const CHUNK = 500;

function* checksumsOf(sopUids: string[]): Plan<Map<string, string>> {
  const known = new Map<string, string>();
  for (const chunk of chunks(sopUids, CHUNK)) {
    const rows = yield* fetchRows<{ sopUid: string; sha256: string }>(sql`SELECT sop_uid AS "sopUid", sha256 FROM instances WHERE sop_uid IN ${list(chunk)}`);
    for (const r of rows) known.set(r.sopUid, r.sha256);
  }
  return known;
}

/** DESIGN decision 2 and 7: a batch in one transaction, decided (decision.ts) against the rows as they are in it. */
function* indexing(records: IndexRecord[], overwrite: boolean): Plan<Indexed> {
  const known = yield* checksumsOf(records.map((r) => r.sopUid));
  const decisions = decideUploads(records, known, overwrite);
  const fresh = records.filter((_, i) => decisions[i] === 'new');
  const replaced = records.filter((_, i) => decisions[i] === 'replace');
  const outcomes = decisions.map(outcomeOf);
  const rows = [...fresh, ...replaced].map((r) => rowsOf(r));
  if (rows.length === 0) return { outcomes, superseded: [] };
  // Read in the transaction that switches the rows: a version superseded here is named by no row once it commits.
  const superseded: string[] = [];
  for (const chunk of chunks(replaced.map((r) => r.sopUid), CHUNK)) {
    const former = yield* fetchRows<{ objectKey: string }>(sql`SELECT object_key AS "objectKey" FROM instances WHERE sop_uid IN ${list(chunk)}`);
    superseded.push(...former.map((r) => r.objectKey));
  }
  // One statement per level for the whole batch: building SQL per row cost more than running it.
  for (const chunk of chunks(rows, CHUNK)) {
    yield* insert('studies', uniqueBy(chunk.map((r) => r.study), (s) => s.studyUid), true);
    yield* insert('series', uniqueBy(chunk.map((r) => r.series), (s) => s.seriesUid), true);
  }
  for (const chunk of chunks(rows.slice(0, fresh.length), CHUNK)) yield* insert('instances', chunk.map((r) => r.instance));
  // A replaced instance (overwrite allowed) may carry corrected study and series attributes too.
  for (const row of rows.slice(fresh.length)) {
    yield* upsert('studies', row.study);
    yield* upsert('series', row.series);
    yield* upsert('instances', row.instance);
  }
  yield* recount(new Set(rows.map((r) => r.series.seriesUid)), new Set(rows.map((r) => r.study.studyUid)));
  return { outcomes, superseded };
}

/** The instances in scope, with the series and the study they leave empty; what remains is recounted. */
function* removal(scope: Scope): Plan<Removal> {
  const doomed = yield* fetchRows<{ seriesUid: string; objectKey: string }>(
    sql`DELETE FROM instances WHERE ${inScope(scope)} RETURNING series_uid AS "seriesUid", object_key AS "objectKey"`,
  );
  if (doomed.length === 0) return { studies: 0, series: 0, instances: 0, objectKeys: [] };
  const touchedSeries = [...new Set(doomed.map((r) => r.seriesUid))];
  const touchedStudies = new Set([scope.studyUid]);
  const goneSeries = new Set<string>();
  for (const chunk of chunks(touchedSeries, CHUNK)) {
    const owners = yield* fetchRows<{ studyUid: string }>(sql`SELECT DISTINCT study_uid AS "studyUid" FROM series WHERE series_uid IN ${list(chunk)}`);
    for (const r of owners) touchedStudies.add(r.studyUid);
    const gone = yield* fetchRows<{ seriesUid: string }>(sql`
      DELETE FROM series WHERE series_uid IN ${list(chunk)} AND NOT EXISTS (SELECT 1 FROM instances WHERE instances.series_uid = series.series_uid)
      RETURNING series_uid AS "seriesUid"`);
    for (const r of gone) goneSeries.add(r.seriesUid);
  }
  const goneStudies = new Set<string>();
  for (const chunk of chunks([...touchedStudies], CHUNK)) {
    const gone = yield* fetchRows<{ studyUid: string }>(sql`
      DELETE FROM studies WHERE study_uid IN ${list(chunk)} AND NOT EXISTS (SELECT 1 FROM series WHERE series.study_uid = studies.study_uid)
      RETURNING study_uid AS "studyUid"`);
    for (const r of gone) goneStudies.add(r.studyUid);
  }
  const kept = <T>(all: Iterable<T>, gone: Set<T>) => [...all].filter((uid) => !gone.has(uid));
  yield* recount(kept(touchedSeries, goneSeries), kept(touchedStudies, goneStudies));
  return { studies: goneStudies.size, series: goneSeries.size, instances: doomed.length, objectKeys: doomed.map((r) => r.objectKey) };
}

/** The counts QIDO answers without counting (DESIGN decision 4), recomputed for the series and studies a write touched. */
function* recount(seriesUids: Iterable<string>, studyUids: Iterable<string>): Plan<void> {
  for (const chunk of chunks([...seriesUids], CHUNK)) {
    yield* execute(sql`UPDATE series SET num_instances = (SELECT count(*) FROM instances WHERE instances.series_uid = series.series_uid)
      WHERE series_uid IN ${list(chunk)}`);
  }
  for (const chunk of chunks([...studyUids], CHUNK)) {
    // ModalitiesInStudy: the distinct non-empty Modality values of the study's series, in byte order, joined by `\`.
    yield* execute(sql`UPDATE studies SET
      num_series = (SELECT count(*) FROM series WHERE series.study_uid = studies.study_uid),
      num_instances = (SELECT count(*) FROM instances WHERE instances.study_uid = studies.study_uid),
      modalities = coalesce((SELECT string_agg(m.modality, ${'\\'} ORDER BY m.modality)
        FROM (SELECT DISTINCT series.modality FROM series WHERE series.study_uid = studies.study_uid AND series.modality <> '') AS m), ''),
      updated_at = ${Date.now()}
      WHERE study_uid IN ${list(chunk)}`);
  }
}

/**
 * The image that stands for a study or a series (Catalog.representativeImage): the middle one, in instance order,
 * of the first series in number order that holds images.
 */
function* representativeImage(scope: Omit<Scope, 'sopUid'>): Plan<StoredInstance | undefined> {
  const isImage = sql`instances.rows IS NOT NULL AND instances.columns IS NOT NULL`;
  const [first] = yield* fetchRows<{ seriesUid: string; images: number | string }>(sql`
    SELECT series.series_uid AS "seriesUid",
           (SELECT count(*) FROM instances WHERE instances.series_uid = series.series_uid AND ${isImage}) AS images
    FROM series
    WHERE series.study_uid = ${scope.studyUid} ${scope.seriesUid ? sql`AND series.series_uid = ${scope.seriesUid}` : sql``}
      AND EXISTS (SELECT 1 FROM instances WHERE instances.series_uid = series.series_uid AND ${isImage})
    ORDER BY series.series_number IS NULL, series.series_number, series.series_uid
    LIMIT 1`);
  if (!first) return undefined;
  // The middle as OHIF picks it for its own thumbnails: index ⌊n/2⌋.
  const [middle] = yield* fetchRows<DriverStoredInstance>(sql`
    SELECT ${STORED_COLUMNS} FROM instances
    WHERE ${inScope({ studyUid: scope.studyUid, seriesUid: first.seriesUid })} AND ${isImage}
    ORDER BY ${INSTANCE_ORDER} LIMIT 1 OFFSET ${Math.floor(Number(first.images) / 2)}`);
  return middle && storedInstance(middle);
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

const STORED_COLUMNS = sql.raw(`instances.sop_uid AS "sopUid", instances.series_uid AS "seriesUid", instances.study_uid AS "studyUid",
  instances.sop_class_uid AS "sopClassUid", instances.transfer_syntax_uid AS "transferSyntaxUid", instances.number_of_frames AS "numberOfFrames",
  instances.object_key AS "objectKey", instances.size AS size, instances.sha256 AS sha256, instances.inflated AS inflated,
  instances.frames AS frames, instances.json AS json`);

/** As a driver hands it back: Postgres gives 64-bit integers as text and booleans as booleans, SQLite both as numbers. */
type DriverStoredInstance = Omit<StoredInstance, 'numberOfFrames' | 'size' | 'inflated'> & { numberOfFrames: number | string; size: number | string; inflated: boolean | number };

function storedInstance(r: DriverStoredInstance): StoredInstance {
  return { ...r, numberOfFrames: Number(r.numberOfFrames), size: Number(r.size), inflated: Boolean(r.inflated) };
}

const INSTANCE_ORDER = sql.raw('instances.series_uid, instances.instance_number IS NULL, instances.instance_number, instances.sop_uid');

function inScope(scope: Scope): SQL {
  const conditions: SQL[] = [sql`instances.study_uid = ${scope.studyUid}`];
  if (scope.seriesUid) conditions.push(sql`instances.series_uid = ${scope.seriesUid}`);
  if (scope.sopUid) conditions.push(sql`instances.sop_uid = ${scope.sopUid}`);
  return sql.join(conditions, sql` AND `);
}

function where(conditions: SQL[]): SQL {
  return conditions.length ? sql`WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
}

function list(values: string[]): SQL {
  return sql`(${sql.join(values.map((v) => sql`${v}`), sql`, `)})`;
}

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/** The first item of each key: the first instance of a study or series in a batch describes it. */
function uniqueBy<T>(items: T[], key: (item: T) => string): T[] {
  const first = new Map<string, T>();
  for (const item of items) if (!first.has(key(item))) first.set(key(item), item);
  return [...first.values()];
}

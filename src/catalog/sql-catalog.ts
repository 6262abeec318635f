import { and, desc, eq, gt, inArray, isNotNull, sql, type Column, type SQL } from 'drizzle-orm';
import type { Announcement, ApplicationEntity, Catalog, TrashEntry, TrashNote, Delivery, DeliveryOutcome, DeliverySearch, Webhook, LoggedUpload, Upload, UploadSearch, Damage, DamagedInstance, Indexed, IndexedObject, InstanceRow, IntegrityPasses, Removal, Scope, SeriesRow, StoredInstance, StudyRow } from './catalog.js';
import type { BulkDataRanges } from '../dicom/json.js';
import { decideUploads, outcomeOf } from './decision.js';
import { SqlIntegrityPasses } from './integrity-passes.js';
import { SqlApplicationEntities } from './sql-application-entities.js';
import { SqlUploads } from './sql-uploads.js';
import { markRemoved, SqlWebhooks, touchAnnouncements } from './sql-webhooks.js';
import { intoTrash, SqlTrash } from './sql-trash.js';
import { execute, fetchRows, type Plan } from './plan.js';
import type { IndexTables } from './index-tables.js';
import { qidoConditions, type QidoQuery } from './qido.js';
import { rowsOf, type IndexRecord } from './record.js';
import { assignments, fromExcluded, ListStatement, prefixed, renderedOnce, RowInserts, SelectList, Selection, type Dialect, type TableOf } from './sql-rows.js';

/**
 * The Catalog in SQL that SQLite and Postgres both speak, over the same tables (schema.sqlite.ts, schema.pg.ts).
 * A dialect hands its tables, whose columns name what the SQL asks, and says only how a plan runs: reads as they
 * come, writes in one transaction as the index's only writer, so that a write reads and then changes rows with no
 * other write in between.
 */
export abstract class SqlCatalog implements Catalog {
  private readonly conditions: (query: QidoQuery) => SQL[];
  private readonly q: Queries;
  private readonly aes: SqlApplicationEntities;
  private readonly uploadLog: SqlUploads;
  private readonly hooks: SqlWebhooks;
  private readonly trash: SqlTrash;

  constructor(
    protected readonly t: IndexTables,
    dialect: Dialect,
  ) {
    const render = renderedOnce(dialect);
    this.conditions = qidoConditions(t, render);
    this.q = queriesOf(t, render);
    this.aes = new SqlApplicationEntities(t.applicationEntities, (plan) => this.read(plan), (plan) => this.write(plan));
    this.uploadLog = new SqlUploads(t, (plan) => this.read(plan), (plan) => this.write(plan));
    this.hooks = new SqlWebhooks(t, (plan) => this.read(plan), (plan) => this.write(plan));
    this.trash = new SqlTrash(t, (plan) => this.read(plan), (plan) => this.write(plan), (seriesUids, studyUids) => recount(this.q, seriesUids, studyUids));
  }

  protected abstract read<T>(plan: Plan<T>): Promise<T>;
  protected abstract write<T>(plan: Plan<T>): Promise<T>;
  abstract withInstanceLocks<T>(sopUids: string[], work: () => Promise<T>): Promise<T>;
  abstract close(): Promise<void>;

  checksumsOf(sopUids: string[]): Promise<Map<string, string>> {
    return this.read(checksumsOf(this.q, sopUids));
  }

  index(records: IndexRecord[], overwrite: boolean): Promise<Indexed> {
    return this.write(indexing(this.t, this.q, records, overwrite));
  }

  remove(scope: Scope, trash?: TrashNote): Promise<Removal> {
    return this.write(removal(this.t, this.q, scope, trash));
  }

  trashEntries(limit: number, offset: number): Promise<TrashEntry[]> {
    return this.trash.trashEntries(limit, offset);
  }

  trashEntry(id: string): Promise<TrashEntry | undefined> {
    return this.trash.trashEntry(id);
  }

  dueTrash(now: number, limit: number): Promise<TrashEntry[]> {
    return this.trash.dueTrash(now, limit);
  }

  trashedObjects(id: string): Promise<Array<{ sopUid: string; objectKey: string }>> {
    return this.trash.trashedObjects(id);
  }

  trashedKeysOf(sopUids: string[]): Promise<Set<string>> {
    return this.trash.trashedKeysOf(sopUids);
  }

  restoreTrash(id: string): Promise<{ restored: number; present: number } | undefined> {
    return this.trash.restoreTrash(id);
  }

  forgetTrash(id: string): Promise<boolean> {
    return this.trash.forgetTrash(id);
  }

  studies(query: QidoQuery): Promise<StudyRow[]> {
    const { q } = this;
    // A value matched anywhere in a text (`*ross*`) finds few studies that no index can find: SQLite, which cannot
    // guess that, walked the whole order index to filter it (35 -> 90 ms at 50,000 studies); it filters first instead.
    const order = query.keys.some((k) => /^[*?]+[^*?]/.test(k.value)) ? q.studyOrderAfterFilter : q.studyOrder;
    return this.read(q.studies.select(sql`${q.fromStudies} ${where(this.conditions(query))} ORDER BY ${order} LIMIT ${query.limit} OFFSET ${query.offset}`));
  }

  async series(query: QidoQuery): Promise<SeriesRow[]> {
    const { q } = this;
    const rows = await this.read(
      q.series.select(sql`${q.fromSeries} ${where(this.conditions(query))} ORDER BY ${q.seriesOrder} LIMIT ${query.limit} OFFSET ${query.offset}`),
    );
    return rows.map(nestSeries);
  }

  async instances(query: QidoQuery): Promise<InstanceRow[]> {
    const { q } = this;
    const rows = await this.read(
      q.instances.select(sql`${q.fromInstances} ${where(this.conditions(query))} ORDER BY ${q.instanceOrder} LIMIT ${query.limit} OFFSET ${query.offset}`),
    );
    return rows.map((r) => ({ json: r.instanceJson, studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid, series: nestSeries(r) }));
  }

  storedInstances(scope: Scope): Promise<StoredInstance[]> {
    return this.read(this.q.storedIn.rows(scope));
  }

  representativeImage(scope: Omit<Scope, 'sopUid'>): Promise<StoredInstance | undefined> {
    return this.read(representativeImage(this.t, this.q, scope));
  }

  async checksums(scope: Scope): Promise<string[]> {
    const rows = await this.read(this.q.checksumsIn.rows(scope));
    return rows.map((r) => r.sha256);
  }

  async objectTotals(): Promise<{ instances: number; bytes: number }> {
    // Postgres answers count and sum of a bigint as text (they may outgrow a JS number; a clinic's store does not).
    const [row] = await this.read(fetchRows<{ instances: number | string; bytes: number | string | null }>(sql`SELECT count(*) AS instances, sum(${this.t.instances.size}) AS bytes FROM ${this.t.instances}`));
    return { instances: Number(row?.instances ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  /** A page at a time, by key: the index may be millions of rows, and it may change while this runs. */
  async *allObjects(after = ''): AsyncIterable<IndexedObject> {
    const { instances: i } = this.t;
    for (;;) {
      const page = await this.read(this.q.objects.select(sql`FROM ${i} WHERE ${gt(i.sopUid, after)} ORDER BY ${i.sopUid} LIMIT ${OBJECTS_PAGE}`));
      yield* page;
      if (page.length < OBJECTS_PAGE) return;
      after = page.at(-1)!.sopUid;
    }
  }

  async objectKeysOf(sopUids: string[]): Promise<Map<string, string>> {
    const rows = await this.read(this.q.objectKeysOf.rows(sopUids, CHUNK));
    return new Map(rows.map((r) => [r.sopUid, r.objectKey]));
  }

  recordBulkData(sopUid: string, sha256: string, bulkData: BulkDataRanges): Promise<void> {
    const { instances: i } = this.t;
    return this.write(execute(sql`UPDATE ${i} SET ${assignments(i, { bulkData: JSON.stringify(bulkData) })} WHERE ${and(eq(i.sopUid, sopUid), eq(i.sha256, sha256))}`));
  }

  markDamage(sopUid: string, sha256: string, damage: Damage | undefined): Promise<void> {
    const { instances: i } = this.t;
    const checked = and(eq(i.sopUid, sopUid), eq(i.sha256, sha256));
    return this.write(
      damage
        ? execute(sql`UPDATE ${i} SET ${assignments(i, { damage, damageFoundAt: Date.now() })} WHERE ${checked}`)
        : execute(sql`UPDATE ${i} SET ${assignments(i, { damage: null, damageFoundAt: null })} WHERE ${checked} AND ${isNotNull(i.damage)}`),
    );
  }

  async damaged(limit: number): Promise<{ counts: Record<Damage, number>; instances: DamagedInstance[] }> {
    const { instances: i } = this.t;
    const counted = await this.read(fetchRows<{ damage: Damage; n: number | string }>(sql`SELECT ${i.damage} AS damage, count(*) AS n FROM ${i} WHERE ${isNotNull(i.damage)} GROUP BY ${i.damage}`));
    const instances = await this.read(this.q.damaged.select(sql`FROM ${i} WHERE ${isNotNull(i.damage)} ORDER BY ${desc(i.damageFoundAt)}, ${i.sopUid} LIMIT ${limit}`));
    const counts: Record<Damage, number> = { missing: 0, changed: 0 };
    for (const c of counted) counts[c.damage] = Number(c.n);
    return { counts, instances };
  }

  passes(): IntegrityPasses {
    return new SqlIntegrityPasses(this.t.integrityPasses, (plan) => this.read(plan), (plan) => this.write(plan));
  }

  applicationEntities(): Promise<ApplicationEntity[]> {
    return this.aes.applicationEntities();
  }

  applicationEntity(aeTitle: string): Promise<ApplicationEntity | undefined> {
    return this.aes.applicationEntity(aeTitle);
  }

  putApplicationEntity(ae: Omit<ApplicationEntity, 'createdAt'>): Promise<ApplicationEntity> {
    return this.aes.putApplicationEntity(ae);
  }

  removeApplicationEntity(aeTitle: string): Promise<boolean> {
    return this.aes.removeApplicationEntity(aeTitle);
  }

  recordUploads(uploads: Upload[]): Promise<void> {
    return this.uploadLog.recordUploads(uploads);
  }

  uploads(search: UploadSearch): Promise<LoggedUpload[]> {
    return this.uploadLog.uploads(search);
  }

  webhooks(): Promise<Webhook[]> {
    return this.hooks.webhooks();
  }

  addWebhook(webhook: Webhook): Promise<void> {
    return this.hooks.addWebhook(webhook);
  }

  removeWebhook(id: string): Promise<boolean> {
    return this.hooks.removeWebhook(id);
  }

  dueAnnouncements(quietSince: number, limit: number): Promise<Announcement[]> {
    return this.hooks.dueAnnouncements(quietSince, limit);
  }

  announce(announcement: Announcement, deliveries: Delivery[]): Promise<boolean> {
    return this.hooks.announce(announcement, deliveries);
  }

  dueDeliveries(now: number, limit: number): Promise<Delivery[]> {
    return this.hooks.dueDeliveries(now, limit);
  }

  claimDelivery(id: string, owner: string, leaseUntil: number, now: number): Promise<boolean> {
    return this.hooks.claimDelivery(id, owner, leaseUntil, now);
  }

  settleDelivery(id: string, owner: string, outcome: DeliveryOutcome): Promise<void> {
    return this.hooks.settleDelivery(id, owner, outcome);
  }

  deliveries(search: DeliverySearch): Promise<Delivery[]> {
    return this.hooks.deliveries(search);
  }

  delivery(id: string): Promise<Delivery | undefined> {
    return this.hooks.delivery(id);
  }

  replayDelivery(id: string, now: number, giveUpAt: number): Promise<Delivery | undefined> {
    return this.hooks.replayDelivery(id, now, giveUpAt);
  }

  pruneDeliveries(before: number): Promise<number> {
    return this.hooks.pruneDeliveries(before);
  }

  async check(): Promise<void> {
    await this.read(fetchRows(sql`SELECT 1`));
  }
}

const OBJECTS_PAGE = 1000;
/** UIDs per IN list, well inside either dialect's limit of bound parameters. */
const CHUNK = 500;

type Instances = IndexTables['instances'];

/** A study row's columns; beside a series row they are named `study.…` and nested by nestSeries. */
type FlatSeriesRow = Omit<SeriesRow, 'study'> & { [K in keyof StudyRow as `study.${K}`]: StudyRow[K] };

/**
 * The reads a catalog asks again and again, built once from its tables: QIDO's select lists, joins and orders
 * (whose WHERE changes with each query) rendered once, and the reads of instances in a scope, prepared once per
 * shape of scope.
 */
function queriesOf(t: IndexTables, render: (fragment: SQL) => SQL) {
  const { studies: s, series: se, instances: i } = t;
  const study: { [K in keyof StudyRow]: Column } = { json: s.json, numSeries: s.numSeries, numInstances: s.numInstances, modalities: s.modalities, studyUid: s.studyUid };
  const series = { json: se.json, numInstances: se.numInstances, studyUid: se.studyUid, seriesUid: se.seriesUid, ...prefixed('study.', study) };
  const stored: { [K in keyof StoredInstance]: Column } = {
    sopUid: i.sopUid,
    seriesUid: i.seriesUid,
    studyUid: i.studyUid,
    sopClassUid: i.sopClassUid,
    transferSyntaxUid: i.transferSyntaxUid,
    numberOfFrames: i.numberOfFrames,
    objectKey: i.objectKey,
    size: i.size,
    sha256: i.sha256,
    inflated: i.inflated,
    frames: i.frames,
    bulkData: i.bulkData,
    json: i.json,
  };
  const instanceOrder = render(sql`${i.seriesUid}, ${i.instanceNumber} IS NULL, ${i.instanceNumber}, ${i.sopUid}`);
  const storedList = new SelectList<StoredInstance>(stored, render);
  // ModalitiesInStudy: the distinct non-empty Modality values of the study's series, in byte order, joined by `\`.
  const modality = sql.identifier(se.modality.name);
  const modalities = sql`coalesce((SELECT string_agg(${modality}, ${'\\'} ORDER BY ${modality})
    FROM (SELECT DISTINCT ${se.modality} FROM ${se} WHERE ${eq(se.studyUid, s.studyUid)} AND ${se.modality} <> '') AS m), '')`;
  const studyCounts = {
    numSeries: sql`(SELECT count(*) FROM ${se} WHERE ${eq(se.studyUid, s.studyUid)})`,
    numInstances: sql`(SELECT count(*) FROM ${i} WHERE ${eq(i.studyUid, s.studyUid)})`,
    modalities,
    updatedAt: sql`${sql.param(sql.placeholder('updatedAt'), s.updatedAt)}`,
  };
  return {
    studies: new SelectList<StudyRow>(study, render),
    fromStudies: render(sql`FROM ${s}`),
    // Newest first, studies without a date last; as the studies_date index holds them (schema.*.ts).
    studyOrder: render(sql`${s.studyDate} DESC NULLS LAST, ${s.studyTime} DESC NULLS LAST, ${s.studyUid} DESC NULLS LAST`),
    // The same order in terms no index gives: the rows that match are found first, then sorted.
    studyOrderAfterFilter: render(sql`coalesce(${s.studyDate}, '') DESC, coalesce(${s.studyTime}, '') DESC, ${s.studyUid} DESC`),
    series: new SelectList<FlatSeriesRow>(series, render),
    fromSeries: render(sql`FROM ${se} JOIN ${s} ON ${eq(s.studyUid, se.studyUid)}`),
    seriesOrder: render(sql`${se.studyUid}, ${se.seriesNumber} IS NULL, ${se.seriesNumber}, ${se.seriesUid}`),
    instances: new SelectList<FlatSeriesRow & { sopUid: string; instanceJson: string }>({ instanceJson: i.json, sopUid: i.sopUid, ...series }, render),
    fromInstances: render(sql`FROM ${i} JOIN ${se} ON ${eq(se.seriesUid, i.seriesUid)} JOIN ${s} ON ${eq(s.studyUid, i.studyUid)}`),
    instanceOrder,
    stored: storedList,
    storedIn: new InScope(i, storedList, (inScope) => sql`FROM ${i} WHERE ${inScope} ORDER BY ${instanceOrder}`),
    checksumsIn: new InScope(i, new SelectList<{ sha256: string }>({ sha256: i.sha256 }), (inScope) => sql`FROM ${i} WHERE ${inScope} ORDER BY ${instanceOrder}`),
    objects: new SelectList<IndexedObject>({ sopUid: i.sopUid, objectKey: i.objectKey, size: i.size, sha256: i.sha256, damage: i.damage }),
    checksumsOf: instancesAmong<{ sopUid: string; sha256: string }>(i, { sopUid: i.sopUid, sha256: i.sha256 }),
    objectKeysOf: instancesAmong<{ sopUid: string; objectKey: string }>(i, { sopUid: i.sopUid, objectKey: i.objectKey }),
    // A batch's new rows; a study or series already indexed keeps the row its first instance made.
    newStudies: new RowInserts(s, () => sql`ON CONFLICT DO NOTHING`),
    newSeries: new RowInserts(se, () => sql`ON CONFLICT DO NOTHING`),
    newInstances: new RowInserts(i),
    // A replaced instance (overwrite allowed) may carry corrected study and series attributes too.
    studyReplacing: new RowInserts(s, replacing(s, 'studyUid')),
    seriesReplacing: new RowInserts(se, replacing(se, 'seriesUid')),
    instanceReplacing: new RowInserts(i, replacing(i, 'sopUid')),
    // The counts QIDO answers without counting (DESIGN decision 4), recomputed for the series and studies a write touched.
    recountSeries: new ListStatement(se.seriesUid, (inList) => sql`UPDATE ${se} SET ${assignments(se, { numInstances: sql`(SELECT count(*) FROM ${i} WHERE ${eq(i.seriesUid, se.seriesUid)})` })} WHERE ${inList}`),
    recountStudies: new ListStatement(s.studyUid, (inList) => sql`UPDATE ${s} SET ${assignments(s, studyCounts)} WHERE ${inList}`),
    damaged: new SelectList<DamagedInstance>({ studyUid: i.studyUid, seriesUid: i.seriesUid, sopUid: i.sopUid, objectKey: i.objectKey, damage: i.damage, foundAt: i.damageFoundAt }),
  };
}
type Queries = ReturnType<typeof queriesOf>;

/** These columns of the indexed instances among those asked. */
function instancesAmong<Row>(i: Instances, columns: { [K in keyof Row]: Column }): ListStatement<Row> {
  const list = new SelectList<Row>(columns);
  return new ListStatement(i.sopUid, (inList) => sql`SELECT ${list.list} FROM ${i} WHERE ${inList}`, list);
}

/** An upsert's conflict rule: the row with the same key takes every other column of the row inserted. */
function replacing<Row>(table: TableOf<Row>, key: keyof Row & string): (columns: Array<keyof Row & string>) => SQL {
  return (columns) => sql`ON CONFLICT (${sql.identifier(table[key].name)}) DO UPDATE SET ${fromExcluded(table, columns.filter((c) => c !== key))}`;
}

const SCOPE_KEYS = ['studyUid', 'seriesUid', 'sopUid'] as const;

/** The instances in scope: those of a study, narrowed to a series or to one instance (values or placeholders). */
function inScope(i: Instances, scope: { [K in keyof Scope]: unknown }): SQL {
  return and(...SCOPE_KEYS.filter((key) => scope[key]).map((key) => eq(i[key], scope[key])))!;
}

/** A read of the instances in a scope, prepared once for each shape of scope (a study, a series, an instance). */
class InScope<Row> {
  private readonly byShape = new Map<string, Selection<Row>>();

  constructor(
    private readonly i: Instances,
    private readonly list: SelectList<Row>,
    private readonly rest: (inScope: SQL) => SQL,
  ) {}

  rows(scope: Scope): Plan<Row[]> {
    const keys = SCOPE_KEYS.filter((key) => scope[key]);
    const shape = keys.join();
    let selection = this.byShape.get(shape);
    if (!selection) {
      const placeholders = Object.fromEntries(keys.map((key) => [key, sql.placeholder(key)])) as { studyUid: unknown };
      selection = new Selection(this.list, this.rest(inScope(this.i, placeholders)));
      this.byShape.set(shape, selection);
    }
    return selection.rows(scope);
  }
}

function* checksumsOf(q: Queries, sopUids: string[]): Plan<Map<string, string>> {
  const rows = yield* q.checksumsOf.rows(sopUids, CHUNK);
  return new Map(rows.map((r) => [r.sopUid, r.sha256]));
}

/** DESIGN decision 2 and 7: a batch in one transaction, decided (decision.ts) against the rows as they are in it. */
function* indexing(t: IndexTables, q: Queries, records: IndexRecord[], overwrite: boolean): Plan<Indexed> {
  const known = yield* checksumsOf(q, records.map((r) => r.sopUid));
  const decisions = decideUploads(records, known, overwrite);
  const fresh = records.filter((_, i) => decisions[i] === 'new');
  const replaced = records.filter((_, i) => decisions[i] === 'replace');
  const outcomes = decisions.map(outcomeOf);
  const rows = [...fresh, ...replaced].map((r) => rowsOf(r));
  if (rows.length === 0) return { outcomes, superseded: [] };
  // Read in the transaction that switches the rows: a version superseded here is named by no row once it commits.
  const former = yield* q.objectKeysOf.rows(replaced.map((r) => r.sopUid), CHUNK);
  const superseded = former.map((r) => r.objectKey);
  // One statement per level for the whole batch: building SQL per row cost more than running it.
  yield* q.newStudies.insert(uniqueBy(rows.map((r) => r.study), (s) => s.studyUid));
  yield* q.newSeries.insert(uniqueBy(rows.map((r) => r.series), (s) => s.seriesUid));
  yield* q.newInstances.insert(rows.slice(0, fresh.length).map((r) => r.instance));
  for (const row of rows.slice(fresh.length)) {
    yield* q.studyReplacing.insert([row.study]);
    yield* q.seriesReplacing.insert([row.series]);
    yield* q.instanceReplacing.insert([row.instance]);
  }
  const studyUids = new Set(rows.map((r) => r.study.studyUid));
  yield* recount(q, new Set(rows.map((r) => r.series.seriesUid)), studyUids);
  yield* touchAnnouncements(t, [...studyUids], Date.now(), CHUNK);
  return { outcomes, superseded };
}

/** The instances in scope, with the series and the study they leave empty; what remains is recounted. */
function* removal(t: IndexTables, q: Queries, scope: Scope, trash: TrashNote | undefined): Plan<Removal> {
  const { studies: s, series: se, instances: i } = t;
  if (trash) yield* intoTrash(t, scope, inScope(i, scope), trash);
  const doomed = yield* new SelectList<{ seriesUid: string; objectKey: string }>({ seriesUid: i.seriesUid, objectKey: i.objectKey }).returning(
    sql`DELETE FROM ${i} WHERE ${inScope(i, scope)}`,
  );
  if (doomed.length === 0) return { studies: 0, series: 0, instances: 0, objectKeys: [] };
  const touchedSeries = [...new Set(doomed.map((r) => r.seriesUid))];
  const touchedStudies = new Set([scope.studyUid]);
  const goneSeries = new Set<string>();
  const seriesUids = new SelectList<{ seriesUid: string }>({ seriesUid: se.seriesUid });
  const studyUids = new SelectList<{ studyUid: string }>({ studyUid: s.studyUid });
  for (const chunk of chunks(touchedSeries, CHUNK)) {
    const owners = yield* fetchRows<{ studyUid: string }>(sql`SELECT DISTINCT ${se.studyUid} AS "studyUid" FROM ${se} WHERE ${inArray(se.seriesUid, chunk)}`);
    for (const r of owners) touchedStudies.add(r.studyUid);
    const gone = yield* seriesUids.returning(sql`DELETE FROM ${se} WHERE ${inArray(se.seriesUid, chunk)} AND NOT EXISTS (SELECT 1 FROM ${i} WHERE ${eq(i.seriesUid, se.seriesUid)})`);
    for (const r of gone) goneSeries.add(r.seriesUid);
  }
  // Before the studies go: an announcement of a deletion says whose it was.
  yield* touchAnnouncements(t, [...touchedStudies], Date.now(), CHUNK);
  const goneStudies = new Set<string>();
  for (const chunk of chunks([...touchedStudies], CHUNK)) {
    const gone = yield* studyUids.returning(sql`DELETE FROM ${s} WHERE ${inArray(s.studyUid, chunk)} AND NOT EXISTS (SELECT 1 FROM ${se} WHERE ${eq(se.studyUid, s.studyUid)})`);
    for (const r of gone) goneStudies.add(r.studyUid);
  }
  const kept = <T>(all: Iterable<T>, gone: Set<T>) => [...all].filter((uid) => !gone.has(uid));
  yield* recount(q, kept(touchedSeries, goneSeries), kept(touchedStudies, goneStudies));
  yield* markRemoved(t, [...goneStudies], CHUNK);
  return { studies: goneStudies.size, series: goneSeries.size, instances: doomed.length, objectKeys: doomed.map((r) => r.objectKey) };
}

/** The counts QIDO answers without counting (DESIGN decision 4), recomputed for the series and studies a write touched. */
function* recount(q: Queries, seriesUids: Iterable<string>, studyUids: Iterable<string>): Plan<void> {
  yield* q.recountSeries.rows([...seriesUids], CHUNK);
  yield* q.recountStudies.rows([...studyUids], CHUNK, { updatedAt: Date.now() });
}

/**
 * The image that stands for a study or a series (Catalog.representativeImage): the middle one, in instance order,
 * of the first series in number order that holds images.
 */
function* representativeImage(t: IndexTables, q: Queries, scope: Omit<Scope, 'sopUid'>): Plan<StoredInstance | undefined> {
  const { series: se, instances: i } = t;
  const isImage = and(isNotNull(i.rows), isNotNull(i.columns));
  const ofSeries = and(eq(i.seriesUid, se.seriesUid), isImage);
  const [first] = yield* fetchRows<{ seriesUid: string; images: number | string }>(sql`
    SELECT ${se.seriesUid} AS "seriesUid", (SELECT count(*) FROM ${i} WHERE ${ofSeries}) AS images
    FROM ${se}
    WHERE ${eq(se.studyUid, scope.studyUid)} ${scope.seriesUid ? sql`AND ${eq(se.seriesUid, scope.seriesUid)}` : sql``}
      AND EXISTS (SELECT 1 FROM ${i} WHERE ${ofSeries})
    ORDER BY ${se.seriesNumber} IS NULL, ${se.seriesNumber}, ${se.seriesUid}
    LIMIT 1`);
  if (!first) return undefined;
  // The middle as OHIF picks it for its own thumbnails: index ⌊n/2⌋.
  const [middle] = yield* q.stored.select(sql`FROM ${i}
    WHERE ${inScope(i, { studyUid: scope.studyUid, seriesUid: first.seriesUid })} AND ${isImage}
    ORDER BY ${q.instanceOrder} LIMIT 1 OFFSET ${Math.floor(Number(first.images) / 2)}`);
  return middle;
}

function nestSeries(r: FlatSeriesRow): SeriesRow {
  const study = { json: r['study.json'], numSeries: r['study.numSeries'], numInstances: r['study.numInstances'], modalities: r['study.modalities'], studyUid: r['study.studyUid'] };
  return { json: r.json, numInstances: r.numInstances, studyUid: r.studyUid, seriesUid: r.seriesUid, study };
}

function where(conditions: SQL[]): SQL {
  return conditions.length ? sql`WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
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

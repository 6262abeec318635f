import { asc, desc, eq, inArray, lte, sql, type SQL } from 'drizzle-orm';
import type { Scope, TrashEntry, TrashNote } from './catalog.js';
import type { IndexTables } from './index-tables.js';
import { execute, type Plan } from './plan.js';
import { changed, columnsOf, insertInto, SelectList, type Run } from './sql-rows.js';
import { touchAnnouncements } from './sql-webhooks.js';

type Tables = IndexTables;
type Recount = (seriesUids: string[], studyUids: string[]) => Plan<void>;
/** The rows a deletion took, as they were, to be put back whole. */
type TrashedRows = { study: Record<string, unknown> | null; series: Array<Record<string, unknown>> };

const CHUNK = 500;

/**
 * In the transaction of a removal, before its rows go: the instances in scope, their series and their study, as
 * they are, into the trash, under the note's id. Returns nothing when the scope holds no instance.
 */
export function* intoTrash(t: Tables, scope: Scope, inScope: SQL, note: TrashNote): Plan<void> {
  const { studies: s, series: se, instances: i } = t;
  const instances = yield* new SelectList<Record<string, unknown>>(columnsOf(i)).select(sql`FROM ${i} WHERE ${inScope}`);
  if (instances.length === 0) return;
  const [study] = yield* new SelectList<Record<string, unknown>>(columnsOf(s)).select(sql`FROM ${s} WHERE ${eq(s.studyUid, scope.studyUid)}`);
  const seriesUids = [...new Set(instances.map((r) => r.seriesUid as string))];
  const series = yield* new SelectList<Record<string, unknown>>(columnsOf(se)).select(sql`FROM ${se} WHERE ${inArray(se.seriesUid, seriesUids)}`);
  const rows: TrashedRows = { study: study ?? null, series };
  yield* insertInto(t.trashEntries, [
    {
      ...note,
      studyUid: scope.studyUid,
      seriesUid: scope.seriesUid ?? null,
      sopUid: scope.sopUid ?? null,
      patientId: (study?.patientId as string | null) ?? null,
      studyJson: (study?.json as string | undefined) ?? '{}',
      rows: JSON.stringify(rows),
      instances: instances.length,
      bytes: instances.reduce((sum, r) => sum + Number(r.size), 0),
    },
  ]);
  yield* insertInto(
    t.trashInstances,
    instances.map((r) => ({ entryId: note.id, sopUid: r.sopUid as string, objectKey: r.objectKey as string, row: JSON.stringify(r) })),
  );
}

/** The trash's entries, their instances' objects, and putting them back. */
export class SqlTrash {
  private readonly entries: SelectList<TrashEntry>;

  constructor(
    private readonly t: Tables,
    private readonly read: Run,
    private readonly write: Run,
    private readonly recount: Recount,
  ) {
    const { rows: _rows, ...entry } = columnsOf(t.trashEntries);
    this.entries = new SelectList<TrashEntry>(entry);
  }

  trashEntries(limit: number, offset: number): Promise<TrashEntry[]> {
    const e = this.t.trashEntries;
    return this.read(this.entries.select(sql`FROM ${e} ORDER BY ${desc(e.deletedAt)}, ${desc(e.id)} LIMIT ${limit} OFFSET ${offset}`));
  }

  async trashEntry(id: string): Promise<TrashEntry | undefined> {
    const [entry] = await this.read(this.entries.select(sql`FROM ${this.t.trashEntries} WHERE ${eq(this.t.trashEntries.id, id)}`));
    return entry;
  }

  dueTrash(now: number, limit: number): Promise<TrashEntry[]> {
    const e = this.t.trashEntries;
    return this.read(this.entries.select(sql`FROM ${e} WHERE ${lte(e.purgeAfter, now)} ORDER BY ${asc(e.purgeAfter)} LIMIT ${limit}`));
  }

  trashedObjects(id: string): Promise<Array<{ sopUid: string; objectKey: string }>> {
    const ti = this.t.trashInstances;
    return this.read(new SelectList<{ sopUid: string; objectKey: string }>({ sopUid: ti.sopUid, objectKey: ti.objectKey }).select(sql`FROM ${ti} WHERE ${eq(ti.entryId, id)}`));
  }

  async trashedKeysOf(sopUids: string[]): Promise<Set<string>> {
    const ti = this.t.trashInstances;
    const keys = new Set<string>();
    for (let i = 0; i < sopUids.length; i += CHUNK) {
      const rows = await this.read(new SelectList<{ objectKey: string }>({ objectKey: ti.objectKey }).select(sql`FROM ${ti} WHERE ${inArray(ti.sopUid, sopUids.slice(i, i + CHUNK))}`));
      for (const r of rows) keys.add(r.objectKey);
    }
    return keys;
  }

  forgetTrash(id: string): Promise<boolean> {
    const { trashEntries: e, trashInstances: ti } = this.t;
    return this.write(
      (function* () {
        yield* execute(sql`DELETE FROM ${ti} WHERE ${eq(ti.entryId, id)}`);
        return (yield* changed(sql`DELETE FROM ${e} WHERE ${eq(e.id, id)}`, e.id)) > 0;
      })(),
    );
  }

  restoreTrash(id: string): Promise<{ restored: number; present: number } | undefined> {
    const { t, recount } = this;
    return this.write(
      (function* (): Plan<{ restored: number; present: number } | undefined> {
        const { studies: s, series: se, instances: i, trashEntries: e, trashInstances: ti } = t;
        const [entry] = yield* new SelectList<{ rows: string; studyUid: string }>({ rows: e.rows, studyUid: e.studyUid }).select(sql`FROM ${e} WHERE ${eq(e.id, id)}`);
        if (!entry) return undefined;
        const trashed = yield* new SelectList<{ sopUid: string; row: string }>({ sopUid: ti.sopUid, row: ti.row }).select(sql`FROM ${ti} WHERE ${eq(ti.entryId, id)}`);
        const rows = JSON.parse(entry.rows) as TrashedRows;
        const doNothing = sql`ON CONFLICT DO NOTHING`;
        // A study or series stored again since keeps its rows as they are now; only what went comes back.
        if (rows.study) yield* insertInto(s, [rows.study as never], doNothing);
        yield* insertInto(se, rows.series as never[], doNothing);
        // An instance sent again since is the one kept: the trashed version of it stays in the trash's past.
        let restored = 0;
        for (let at = 0; at < trashed.length; at += CHUNK) {
          const chunk = trashed.slice(at, at + CHUNK);
          const present = new Set((yield* new SelectList<{ sopUid: string }>({ sopUid: i.sopUid }).select(sql`FROM ${i} WHERE ${inArray(i.sopUid, chunk.map((r) => r.sopUid))}`)).map((r) => r.sopUid));
          const back = chunk.filter((r) => !present.has(r.sopUid)).map((r) => JSON.parse(r.row) as never);
          restored += yield* insertInto(i, back);
        }
        // A series or study row put back for instances all of which were sent again elsewhere holds nothing: it goes.
        yield* execute(sql`DELETE FROM ${se} WHERE ${eq(se.studyUid, entry.studyUid)} AND NOT EXISTS (SELECT 1 FROM ${i} WHERE ${eq(i.seriesUid, se.seriesUid)})`);
        yield* execute(sql`DELETE FROM ${s} WHERE ${eq(s.studyUid, entry.studyUid)} AND NOT EXISTS (SELECT 1 FROM ${se} WHERE ${eq(se.studyUid, s.studyUid)})`);
        yield* recount(
          rows.series.map((r) => r.seriesUid as string),
          [entry.studyUid],
        );
        yield* touchAnnouncements(t, [entry.studyUid], Date.now(), CHUNK);
        yield* execute(sql`DELETE FROM ${ti} WHERE ${eq(ti.entryId, id)}`);
        yield* execute(sql`DELETE FROM ${e} WHERE ${eq(e.id, id)}`);
        return { restored, present: trashed.length - restored };
      })(),
    );
  }
}

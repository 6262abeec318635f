import { and, desc, eq, gte, inArray, lte, sql, type SQL } from 'drizzle-orm';
import type { LoggedUpload, Refusal, Upload, UploadRecords, UploadSearch } from './catalog.js';
import type { IndexTables } from './index-tables.js';
import { execute } from './plan.js';
import { columnsOf, insertInto, SelectList, type Run } from './sql-rows.js';

/** Refusals kept with an upload: enough to act on; its count says how many there were. */
export const KEPT_REFUSALS = 100;

type Tables = Pick<IndexTables, 'uploads' | 'uploadStudies' | 'studies'>;
type UploadRow = Omit<Upload, 'refusals' | 'studyUids'> & { refusals: string };

/** UploadRecords over the uploads and upload_studies tables, one text of SQL for both dialects. */
export class SqlUploads implements UploadRecords {
  private readonly list: SelectList<UploadRow>;

  constructor(
    private readonly t: Tables,
    private readonly read: Run,
    private readonly write: Run,
  ) {
    this.list = new SelectList(columnsOf(t.uploads));
  }

  recordUploads(uploads: Upload[]): Promise<void> {
    const { t } = this;
    const rows = uploads.map(({ studyUids: _, refusals, ...row }) => ({ ...row, refusals: JSON.stringify(refusals.slice(0, KEPT_REFUSALS)) }));
    const studies = uploads.flatMap((u) => [...new Set(u.studyUids)].map((studyUid) => ({ uploadId: u.id, studyUid, patientId: null })));
    return this.write(
      (function* () {
        yield* insertInto(t.uploads, rows);
        if (studies.length === 0) return;
        yield* insertInto(t.uploadStudies, studies);
        // The patient as the index has it, found in the same transaction as the uploads' rows.
        const patient = sql`(SELECT ${t.studies.patientId} FROM ${t.studies} WHERE ${t.studies.studyUid} = ${t.uploadStudies.studyUid})`;
        const ids = uploads.filter((u) => u.studyUids.length > 0).map((u) => u.id);
        yield* execute(sql`UPDATE ${t.uploadStudies} SET ${sql.identifier(t.uploadStudies.patientId.name)} = ${patient} WHERE ${inArray(t.uploadStudies.uploadId, ids)}`);
      })(),
    );
  }

  async uploads(search: UploadSearch): Promise<LoggedUpload[]> {
    const { t } = this;
    const studyOf = (condition: SQL) => sql`EXISTS (SELECT 1 FROM ${t.uploadStudies} WHERE ${t.uploadStudies.uploadId} = ${t.uploads.id} AND ${condition})`;
    const conditions = [
      search.studyUid === undefined ? undefined : studyOf(eq(t.uploadStudies.studyUid, search.studyUid)),
      search.patientId === undefined ? undefined : studyOf(eq(t.uploadStudies.patientId, search.patientId)),
      search.credential === undefined ? undefined : eq(t.uploads.credential, search.credential),
      search.since === undefined ? undefined : gte(t.uploads.at, search.since),
      search.until === undefined ? undefined : lte(t.uploads.at, search.until),
    ].filter((c) => c !== undefined);
    const where = conditions.length > 0 ? sql`WHERE ${and(...conditions)}` : sql``;
    const rows = await this.read(this.list.select(sql`FROM ${t.uploads} ${where} ORDER BY ${desc(t.uploads.at)}, ${desc(t.uploads.id)} LIMIT ${search.limit} OFFSET ${search.offset}`));
    if (rows.length === 0) return [];
    const studies = await this.read(
      new SelectList<{ uploadId: string; studyUid: string; patientId: string | null }>(columnsOf(t.uploadStudies)).select(
        sql`FROM ${t.uploadStudies} WHERE ${inArray(t.uploadStudies.uploadId, rows.map((r) => r.id))} ORDER BY ${t.uploadStudies.studyUid}`,
      ),
    );
    return rows.map((row) => {
      const own = studies.filter((s) => s.uploadId === row.id);
      return {
        ...row,
        refusals: JSON.parse(row.refusals) as Refusal[],
        studyUids: own.map((s) => s.studyUid),
        patientIds: [...new Set(own.flatMap((s) => (s.patientId === null ? [] : [s.patientId])))],
      };
    });
  }
}

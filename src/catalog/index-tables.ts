import type { Announcement, ApplicationEntity, Damage, Delivery, PassRow, SeriesRow, StudyRow, TrashEntry, Upload, Webhook } from './catalog.js';
import type { rowsOf } from './record.js';
import type { TableOf } from './sql-rows.js';

/**
 * The index's tables of schema.sqlite.ts or schema.pg.ts, by the keys the shared SQL names their columns with: a
 * column renamed or dropped in either schema fails the compile where a dialect hands its tables over, not a query.
 */
export type IndexTables = { [T in keyof IndexRows]: TableOf<IndexRows[T]> };

/** The key of a column of one of the index's tables, as `IndexTables` names it. */
export type ColumnKey<T extends keyof IndexRows> = keyof IndexRows[T] & string;

/** Row values of each index table, as rowsOf makes them. */
type Rows = ReturnType<typeof rowsOf>;

type IndexRows = {
  studies: Rows['study'] & StudyRow;
  series: Rows['series'] & Pick<SeriesRow, 'numInstances'>;
  instances: Omit<Rows['instance'], 'damage' | 'damageFoundAt'> & { damage: Damage | null; damageFoundAt: number | null };
  integrityPasses: PassRow & { name: string };
  applicationEntities: ApplicationEntity;
  /** Refusals as JSON text; the studies in upload_studies. */
  uploads: Omit<Upload, 'refusals' | 'studyUids'> & { refusals: string };
  uploadStudies: { uploadId: string; studyUid: string; patientId: string | null };
  studyAnnouncements: Announcement;
  /** Event types comma-separated. */
  webhooks: Omit<Webhook, 'events'> & { events: string };
  webhookDeliveries: Delivery & { leaseOwner: string | null; leaseUntil: number };
  /** `rows`: JSON of the study and series rows as they were. */
  trashEntries: TrashEntry & { rows: string };
  /** `row`: JSON of the instance row as it was. */
  trashInstances: { entryId: string; sopUid: string; objectKey: string; row: string };
};

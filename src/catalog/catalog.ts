import type { BulkDataRanges } from '../dicom/json.js';
import type { IndexRecord } from './record.js';
import type { QidoQuery } from './qido.js';

export type StoredInstance = {
  sopUid: string;
  seriesUid: string;
  studyUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  numberOfFrames: number;
  objectKey: string;
  size: number;
  sha256: string;
  inflated: boolean;
  frames: string;
  /** JSON BulkDataRanges (dicom/json.ts); null for an instance indexed before they were recorded. */
  bulkData: string | null;
  json: string;
};

export type StudyRow = { json: string; numSeries: number; numInstances: number; modalities: string; studyUid: string };
/** A series with its study, whose attributes a search of all series answers too (PS3.18 10.6.3.3.2). */
export type SeriesRow = { json: string; numInstances: number; studyUid: string; seriesUid: string; study: StudyRow };
export type InstanceRow = { json: string; studyUid: string; seriesUid: string; sopUid: string; series: SeriesRow };

/** What a read or a verify pass found wrong with an instance's object. */
export type Damage = 'missing' | 'changed';
export type IndexedObject = { sopUid: string; objectKey: string; size: number; sha256: string; damage: Damage | null };
export type DamagedInstance = { studyUid: string; seriesUid: string; sopUid: string; objectKey: string; damage: Damage; foundAt: number };

/** A pass as its row keeps it: under way while `owner` is set; progress and last are the caller's JSON. */
export type PassRow = { owner: string | null; leaseUntil: number; startedAt: number; cursor: string; progress: string; last: string | null };

/**
 * Leases on long passes over the whole store (the scheduled verify), kept in the index that replicas share: one
 * replica works on a pass at a time, another resumes it from its cursor when the lease runs out.
 */
export interface IntegrityPasses {
  /**
   * Takes the pass for `owner` until now + leaseMs: the one under way (whoever held it, if their lease ran out), or a
   * new one when none is under way and the last one started at or before `dueBy`. undefined: another holds it, or
   * none is due.
   */
  claim(name: string, owner: string, leaseMs: number, dueBy: number, freshProgress: string): Promise<PassRow | undefined>;
  /** Saves how far the pass came and extends the lease; false when the lease was lost to another owner. */
  advance(name: string, owner: string, leaseMs: number, cursor: string, progress: string): Promise<boolean>;
  /** Ends the pass with its report; the next one is due an interval after its start. */
  finish(name: string, owner: string, last: string): Promise<void>;
  state(name: string): Promise<PassRow | undefined>;
}

export type Scope = { studyUid: string; seriesUid?: string; sopUid?: string };

export type IndexOutcome = 'stored' | 'duplicate' | 'conflict';

/** A batch's outcomes, and the object keys of the versions its replacements superseded (to be removed now). */
export type Indexed = { outcomes: IndexOutcome[]; superseded: string[] };

/** What a removal took out of the index, and the objects the caller deletes next (DESIGN decision 2). */
export type Removal = { studies: number; series: number; instances: number; objectKeys: string[] };

/**
 * The index's database cannot be reached for now (Postgres down, restarting, out of connections). Requests answer
 * 503 with Retry-After; nothing was written, and the catalog reconnects by itself when the database is back.
 */
export class CatalogUnavailable extends Error {}

/**
 * A DICOM application entity the clinic knows (DIMSE has no passwords): where it calls from and listens (null: any
 * address; no port known) and what it may do. Validated by auth/application-entities.ts before it is put.
 */
export type ApplicationEntity = { aeTitle: string; host: string | null; port: number | null; store: boolean; query: boolean; retrieve: boolean; description: string | null; createdAt: number };

/** An AE title without its leading and trailing spaces, which are not significant (PS3.5 6.2, AE): as it is kept and compared. */
export function trimAeTitle(text: string): string {
  return text.replace(/^ +| +$/g, '');
}

/** The known application entities; AE titles are compared trimmed (trimAeTitle), in their exact case. */
export interface ApplicationEntityRecords {
  /** Sorted by AE title. */
  applicationEntities(): Promise<ApplicationEntity[]>;
  applicationEntity(aeTitle: string): Promise<ApplicationEntity | undefined>;
  /** Inserts or replaces; a replaced one keeps its createdAt. */
  putApplicationEntity(ae: Omit<ApplicationEntity, 'createdAt'>): Promise<ApplicationEntity>;
  /** False when none has that title. */
  removeApplicationEntity(aeTitle: string): Promise<boolean>;
}

/** A door instances come in by: STOW-RS, the command line's import, the DICOM network, photos and documents made into DICOM. */
export type UploadDoor = 'stow' | 'import' | 'dicom' | 'photos' | 'form';
/** An instance an upload did not store, and why (its STOW FailureReason, which is its C-STORE status). */
export type Refusal = { sopInstanceUid: string | null; failureReason: number; reason: string };
/** One upload as the upload log keeps it (issue 15); `refusals` holds the first 100 of `refused`. */
export type Upload = {
  id: string;
  at: number;
  door: UploadDoor;
  credential: string;
  ip: string | null;
  stored: number;
  present: number;
  refused: number;
  refusals: Refusal[];
  studyUids: string[];
};
/** An upload with the patients of its studies, as the index knows them now. */
export type LoggedUpload = Upload & { patientIds: string[] };
/** What the upload log is searched by; newest first, a page at a time. */
export type UploadSearch = { studyUid?: string; patientId?: string; credential?: string; since?: number; until?: number; limit: number; offset: number };

/** The upload log. */
export interface UploadRecords {
  /** Several uploads' records in one transaction. */
  recordUploads(uploads: Upload[]): Promise<void>;
  uploads(search: UploadSearch): Promise<LoggedUpload[]>;
}

/** What a webhook may be told of (issue 16). */
export const EVENT_TYPES = ['study.available', 'study.deleted'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** A receiver of events, as an admin configured it. */
export type Webhook = { id: string; url: string; secret: string; events: EventType[]; allowLocal: boolean; description: string | null; createdAt: number };

/** A study whose changes are still to be announced: `version` counts its changes, `announcedVersion` the last announced. */
export type Announcement = { studyUid: string; version: number; announcedVersion: number; changedAt: number; removed: boolean; patientId: string | null; accessionNumber: string | null };

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';
/** One event for one webhook, in the outbox until it is delivered or given up. */
export type Delivery = {
  id: string;
  webhookId: string;
  eventType: EventType;
  studyUid: string;
  body: string;
  createdAt: number;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number;
  giveUpAt: number;
  lastStatus: number | null;
  lastError: string | null;
  lastAttemptAt: number | null;
  deliveredAt: number | null;
};
/** What a try made of a delivery. */
export type DeliveryOutcome = Pick<Delivery, 'status' | 'attempts' | 'nextAttemptAt' | 'lastStatus' | 'lastError' | 'lastAttemptAt' | 'deliveredAt'>;
export type DeliverySearch = { webhookId?: string; status?: DeliveryStatus; limit: number; offset: number };

/**
 * Webhooks, the studies still to be announced to them, and the outbox of their deliveries. Replicas share them:
 * announcing and sending are conditional updates that one replica wins.
 */
export interface WebhookRecords {
  /** Oldest first. */
  webhooks(): Promise<Webhook[]>;
  addWebhook(webhook: Webhook): Promise<void>;
  /** With its deliveries; false when none has that id. */
  removeWebhook(id: string): Promise<boolean>;
  /** Studies due to be announced: deleted ones at once, others once unchanged since `quietSince`; oldest change first. */
  dueAnnouncements(quietSince: number, limit: number): Promise<Announcement[]>;
  /**
   * Puts these deliveries in the outbox and marks the study announced, in one transaction, unless it changed since
   * it was read or another replica announced it (false). A deleted study's row goes with its announcement.
   */
  announce(announcement: Announcement, deliveries: Delivery[]): Promise<boolean>;
  /** Pending deliveries whose next try is due and that no replica holds, oldest first. */
  dueDeliveries(now: number, limit: number): Promise<Delivery[]>;
  /** Takes a due delivery for `owner` until `leaseUntil`; false when another replica holds or settled it. */
  claimDelivery(id: string, owner: string, leaseUntil: number, now: number): Promise<boolean>;
  /** Records a try by the lease's owner and lets the lease go. */
  settleDelivery(id: string, owner: string, outcome: DeliveryOutcome): Promise<void>;
  /** Newest first. */
  deliveries(search: DeliverySearch): Promise<Delivery[]>;
  delivery(id: string): Promise<Delivery | undefined>;
  /** Sends a delivery again from now until `giveUpAt`, whatever became of it; undefined when none has that id. */
  replayDelivery(id: string, now: number, giveUpAt: number): Promise<Delivery | undefined>;
  /** Forgets delivered and failed deliveries created before `before`; how many. */
  pruneDeliveries(before: number): Promise<number>;
}

/** Who deleted, why, and until when the trash keeps it (issue 15). */
export type TrashNote = { id: string; deletedAt: number; purgeAfter: number; reason: string; credential: string };
/** A deletion in the trash: what it took (a study, a series or an instance) and its study as it was. */
export type TrashEntry = TrashNote & {
  studyUid: string;
  seriesUid: string | null;
  sopUid: string | null;
  patientId: string | null;
  /** The study's stored attributes (DICOM JSON) as they were. */
  studyJson: string;
  instances: number;
  bytes: number;
};

/** The trash: deletions kept whole, their objects still in the store, until they are restored or purged. */
export interface TrashRecords {
  /** Newest first. */
  trashEntries(limit: number, offset: number): Promise<TrashEntry[]>;
  trashEntry(id: string): Promise<TrashEntry | undefined>;
  /** Entries whose time in the trash is over, oldest first. */
  dueTrash(now: number, limit: number): Promise<TrashEntry[]>;
  trashedObjects(id: string): Promise<Array<{ sopUid: string; objectKey: string }>>;
  /** The object keys the trash holds for these SOP Instance UIDs: objects that are not unindexed, only deleted. */
  trashedKeysOf(sopUids: string[]): Promise<Set<string>>;
  /**
   * Puts the entry's rows back in one transaction and empties it from the trash; an instance stored again since
   * is kept as it is now (`present`). undefined when no entry has that id.
   */
  restoreTrash(id: string): Promise<{ restored: number; present: number } | undefined>;
  /** Forgets the entry (its objects are the caller's to delete first); false when none has that id. */
  forgetTrash(id: string): Promise<boolean>;
}

/** The study/series/instance index, and the application entities, upload log, webhooks and trash beside it; SQLite by default, Postgres when configured. */
export interface Catalog extends ApplicationEntityRecords, UploadRecords, WebhookRecords, TrashRecords {
  /** sha256 of each already indexed SOP Instance UID among those asked. */
  checksumsOf(sopUids: string[]): Promise<Map<string, string>>;
  /** Indexes a batch in one transaction (DESIGN decision 2); objects are already durable. */
  index(records: IndexRecord[], overwrite: boolean): Promise<Indexed>;
  /**
   * Runs `work` while no other process sharing this index holds any of these instances: replicas over one index and
   * one store decide whether an upload is new, put its object and index it one at a time per instance.
   */
  withInstanceLocks<T>(sopUids: string[], work: () => Promise<T>): Promise<T>;
  studies(query: QidoQuery): Promise<StudyRow[]>;
  series(query: QidoQuery): Promise<SeriesRow[]>;
  instances(query: QidoQuery): Promise<InstanceRow[]>;
  /** Stored instances in a study, optionally narrowed to a series or an instance, in series/instance order. */
  storedInstances(scope: Scope): Promise<StoredInstance[]>;
  /**
   * The image that stands for a study or a series (rendered and thumbnail resources, PS3.18 10.4.1.1.3): the middle
   * instance, in InstanceNumber order, of the series with the lowest SeriesNumber among those holding images
   * (Rows and Columns present). undefined when the scope holds no image.
   */
  representativeImage(scope: Omit<Scope, 'sopUid'>): Promise<StoredInstance | undefined>;
  /**
   * Removes the instances in scope in one transaction, with the series and the study they leave empty, and
   * recounts what remains. The objects are not touched: the caller deletes them after the commit, or, with a
   * trash note, leaves them where they are: the rows go into the trash, in the same transaction.
   */
  remove(scope: Scope, trash?: TrashNote): Promise<Removal>;
  /** How many instances are indexed and their bytes together, e.g. to tell how far a copy of them has come. */
  objectTotals(): Promise<{ instances: number; bytes: number }>;
  /** Every indexed object with its checksum, for verification, in SOP Instance UID order from after `after`. */
  allObjects(after?: string): AsyncIterable<IndexedObject>;
  /**
   * Records where an instance's bulk data lies, found at its first read when it was indexed without them; only while
   * the instance still has the checksum of the bytes they were found in.
   */
  recordBulkData(sopUid: string, sha256: string, bulkData: BulkDataRanges): Promise<void>;
  /** The object key of each indexed SOP Instance UID among those asked. */
  objectKeysOf(sopUids: string[]): Promise<Map<string, string>>;
  /**
   * Records what a read or a verify pass found of an instance's object (undefined: whole again). Only while the
   * instance still has the checksum that was checked: bytes replaced meanwhile were not what was found damaged.
   */
  markDamage(sopUid: string, sha256: string, damage: Damage | undefined): Promise<void>;
  /** Instances marked damaged, newest finding first, and how many of each kind there are. */
  damaged(limit: number): Promise<{ counts: Record<Damage, number>; instances: DamagedInstance[] }>;
  /** The scheduled passes' leases and reports (src/integrity/). */
  passes(): IntegrityPasses;
  /** SHA-256 of each instance in scope, in the same order as storedInstances: a cheap fingerprint for ETags. */
  checksums(scope: Scope): Promise<string[]>;
  check(): Promise<void>;
  close(): Promise<void>;
}

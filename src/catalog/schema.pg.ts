import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, customType, index, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';

/**
 * Text compared byte by byte, as SQLite compares it: QIDO answers sort and match alike on both dialects
 * whatever the database's locale, and a btree on such a column serves `LIKE 'prefix%'` too.
 */
const bytewise = customType<{ data: string }>({ dataType: () => 'text COLLATE "C"' });

/** Milliseconds since the epoch, sizes and IS values outgrow 32 bits; they are read back as JS numbers. */
const long = (name: string) => bigint(name, { mode: 'number' });

/** The index of schema.sqlite.ts, column for column; see there for what each holds. */
export const studies = pgTable(
  'studies',
  {
    studyUid: bytewise('study_uid').primaryKey(),
    patientId: bytewise('patient_id'),
    patientNameAlphabetic: bytewise('patient_name_alphabetic'),
    patientNameIdeographic: bytewise('patient_name_ideographic'),
    patientNamePhonetic: bytewise('patient_name_phonetic'),
    patientBirthDate: bytewise('patient_birth_date'),
    patientSex: bytewise('patient_sex'),
    studyDate: bytewise('study_date'),
    studyTime: bytewise('study_time'),
    accessionNumber: bytewise('accession_number'),
    studyId: bytewise('study_id'),
    studyDescription: bytewise('study_description'),
    referringPhysicianName: bytewise('referring_physician_name'),
    modalities: bytewise('modalities').notNull().default(''),
    numSeries: integer('num_series').notNull().default(0),
    numInstances: integer('num_instances').notNull().default(0),
    json: text('json').notNull(),
    updatedAt: long('updated_at').notNull(),
  },
  (t) => [
    index('studies_patient_id').on(t.patientId),
    // The study list's order (QIDO, newest first): read off this index, never sorted, at any size of index.
    index('studies_date').on(t.studyDate.desc().nullsLast(), t.studyTime.desc().nullsLast(), t.studyUid.desc()),
    index('studies_accession').on(t.accessionNumber),
    index('studies_name').on(t.patientNameAlphabetic),
  ],
);

export const series = pgTable(
  'series',
  {
    seriesUid: bytewise('series_uid').primaryKey(),
    studyUid: bytewise('study_uid').notNull(),
    modality: bytewise('modality'),
    seriesNumber: long('series_number'),
    seriesDescription: bytewise('series_description'),
    seriesDate: bytewise('series_date'),
    seriesTime: bytewise('series_time'),
    bodyPartExamined: bytewise('body_part_examined'),
    performedProcedureStepStartDate: bytewise('pps_start_date'),
    numInstances: integer('num_instances').notNull().default(0),
    json: text('json').notNull(),
  },
  (t) => [index('series_study').on(t.studyUid, t.seriesNumber)],
);

export const instances = pgTable(
  'instances',
  {
    sopUid: bytewise('sop_uid').primaryKey(),
    seriesUid: bytewise('series_uid').notNull(),
    studyUid: bytewise('study_uid').notNull(),
    sopClassUid: bytewise('sop_class_uid').notNull(),
    instanceNumber: long('instance_number'),
    transferSyntaxUid: text('transfer_syntax_uid').notNull(),
    numberOfFrames: long('number_of_frames').notNull(),
    rows: long('rows'),
    columns: long('columns'),
    objectKey: text('object_key').notNull(),
    size: long('size').notNull(),
    sha256: text('sha256').notNull(),
    inflated: boolean('inflated').notNull().default(false),
    frames: text('frames').notNull(),
    bulkData: text('bulk_data'),
    json: text('json').notNull(),
    createdAt: long('created_at').notNull(),
    damage: text('damage', { enum: ['missing', 'changed'] }),
    damageFoundAt: long('damage_found_at'),
  },
  (t) => [index('instances_series').on(t.seriesUid, t.instanceNumber), index('instances_study').on(t.studyUid), index('instances_damage').on(t.damage)],
);

export const integrityPasses = pgTable('integrity_passes', {
  name: text('name').primaryKey(),
  owner: text('owner'),
  leaseUntil: long('lease_until').notNull(),
  startedAt: long('started_at').notNull(),
  cursor: bytewise('cursor').notNull(),
  progress: text('progress').notNull(),
  last: text('last'),
});

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    role: text('role').notNull(),
    keyHash: text('key_hash').notNull(),
    hint: text('hint').notNull(),
    createdAt: long('created_at').notNull(),
    expiresAt: long('expires_at'),
    revokedAt: long('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash').on(t.keyHash)],
);

export const revokedTokens = pgTable('revoked_tokens', {
  jti: text('jti').primaryKey(),
  expiresAt: long('expires_at').notNull(),
  revokedAt: long('revoked_at').notNull(),
});

export const studyTokenRevocations = pgTable('study_token_revocations', {
  studyUid: text('study_uid').primaryKey(),
  issuedBefore: long('issued_before').notNull(),
});

export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: long('at').notNull(),
    credential: text('credential').notNull(),
    ip: text('ip'),
    method: text('method').notNull(),
    path: text('path').notNull(),
    query: text('query'),
    studyUid: text('study_uid'),
    seriesUid: text('series_uid'),
    sopUid: text('sop_uid'),
    status: integer('status').notNull(),
    requestId: text('request_id').notNull(),
  },
  (t) => [index('audit_at').on(t.at), index('audit_study').on(t.studyUid, t.at), index('audit_credential').on(t.credential, t.at)],
);

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    login: text('login').notNull(),
    displayName: text('display_name').notNull(),
    roles: text('roles').notNull(),
    passwordHash: text('password_hash').notNull(),
    mustChangePassword: integer('must_change_password').notNull(),
    createdAt: long('created_at').notNull(),
    disabledAt: long('disabled_at'),
    failedSignIns: integer('failed_sign_ins').notNull(),
    lockedUntil: long('locked_until'),
    lastSignInAt: long('last_sign_in_at'),
  },
  (t) => [uniqueIndex('users_login').on(t.login)],
);

export const sessions = pgTable(
  'sessions',
  {
    idHash: text('id_hash').primaryKey(),
    userId: text('user_id').notNull(),
    createdAt: long('created_at').notNull(),
    lastSeenAt: long('last_seen_at').notNull(),
  },
  (t) => [index('sessions_user').on(t.userId)],
);

/** As in schema.sqlite.ts; AE titles compared and sorted byte by byte on both dialects. */
export const applicationEntities = pgTable('application_entities', {
  aeTitle: bytewise('ae_title').primaryKey(),
  host: text('host'),
  port: integer('port'),
  store: boolean('may_store').notNull(),
  query: boolean('may_query').notNull(),
  retrieve: boolean('may_retrieve').notNull(),
  description: text('description'),
  createdAt: long('created_at').notNull(),
});

/** As in schema.sqlite.ts. */
export const uploads = pgTable(
  'uploads',
  {
    id: text('id').primaryKey(),
    at: long('at').notNull(),
    door: text('door').notNull(),
    credential: text('credential').notNull(),
    ip: text('ip'),
    stored: integer('stored').notNull(),
    present: integer('present').notNull(),
    refused: integer('refused').notNull(),
    refusals: text('refusals').notNull(),
  },
  (t) => [index('uploads_at').on(t.at)],
);

export const uploadStudies = pgTable(
  'upload_studies',
  {
    uploadId: text('upload_id').notNull(),
    studyUid: bytewise('study_uid').notNull(),
    patientId: bytewise('patient_id'),
  },
  (t) => [uniqueIndex('upload_studies_upload').on(t.uploadId, t.studyUid), index('upload_studies_study').on(t.studyUid), index('upload_studies_patient').on(t.patientId)],
);

/** As in schema.sqlite.ts. */
export const studyAnnouncements = pgTable(
  'study_announcements',
  {
    studyUid: bytewise('study_uid').primaryKey(),
    version: integer('version').notNull(),
    announcedVersion: integer('announced_version').notNull(),
    changedAt: long('changed_at').notNull(),
    removed: boolean('removed').notNull(),
    patientId: bytewise('patient_id'),
    accessionNumber: bytewise('accession_number'),
  },
  // Only the studies still to be announced: the announcer asks every second, and announced ones are nearly all.
  (t) => [index('study_announcements_pending').on(t.changedAt).where(sql`${t.announcedVersion} < ${t.version}`)],
);

export const webhooks = pgTable('webhooks', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  secret: text('secret').notNull(),
  events: text('events').notNull(),
  allowLocal: boolean('allow_local').notNull(),
  description: text('description'),
  createdAt: long('created_at').notNull(),
});

export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    webhookId: text('webhook_id').notNull(),
    eventType: text('event_type').notNull(),
    studyUid: bytewise('study_uid').notNull(),
    body: text('body').notNull(),
    createdAt: long('created_at').notNull(),
    status: text('status').notNull(),
    attempts: integer('attempts').notNull(),
    nextAttemptAt: long('next_attempt_at').notNull(),
    giveUpAt: long('give_up_at').notNull(),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    lastAttemptAt: long('last_attempt_at'),
    deliveredAt: long('delivered_at'),
    leaseOwner: text('lease_owner'),
    leaseUntil: long('lease_until').notNull(),
  },
  (t) => [index('webhook_deliveries_due').on(t.status, t.nextAttemptAt), index('webhook_deliveries_webhook').on(t.webhookId, t.createdAt)],
);

/** As in schema.sqlite.ts. */
export const trashEntries = pgTable(
  'trash_entries',
  {
    id: text('id').primaryKey(),
    deletedAt: long('deleted_at').notNull(),
    purgeAfter: long('purge_after').notNull(),
    studyUid: bytewise('study_uid').notNull(),
    seriesUid: bytewise('series_uid'),
    sopUid: bytewise('sop_uid'),
    reason: text('reason').notNull(),
    credential: text('credential').notNull(),
    patientId: bytewise('patient_id'),
    studyJson: text('study_json').notNull(),
    rows: text('rows').notNull(),
    instances: integer('instances').notNull(),
    bytes: long('bytes').notNull(),
  },
  (t) => [index('trash_entries_purge').on(t.purgeAfter), index('trash_entries_deleted').on(t.deletedAt)],
);

export const trashInstances = pgTable(
  'trash_instances',
  {
    entryId: text('entry_id').notNull(),
    sopUid: bytewise('sop_uid').notNull(),
    objectKey: text('object_key').notNull(),
    row: text('row').notNull(),
  },
  (t) => [index('trash_instances_entry').on(t.entryId), index('trash_instances_sop').on(t.sopUid)],
);

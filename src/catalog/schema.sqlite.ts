import { sql } from 'drizzle-orm';
import { index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

/** Matching keys are columns (DESIGN decision 4); names (per group) and descriptions are stored folded for case-insensitive matching. */
export const studies = sqliteTable(
  'studies',
  {
    studyUid: text('study_uid').primaryKey(),
    patientId: text('patient_id'),
    patientNameAlphabetic: text('patient_name_alphabetic'),
    patientNameIdeographic: text('patient_name_ideographic'),
    patientNamePhonetic: text('patient_name_phonetic'),
    patientBirthDate: text('patient_birth_date'),
    patientSex: text('patient_sex'),
    studyDate: text('study_date'),
    studyTime: text('study_time'),
    accessionNumber: text('accession_number'),
    studyId: text('study_id'),
    studyDescription: text('study_description'),
    referringPhysicianName: text('referring_physician_name'),
    modalities: text('modalities').notNull().default(''),
    numSeries: integer('num_series').notNull().default(0),
    numInstances: integer('num_instances').notNull().default(0),
    json: text('json').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [
    index('studies_patient_id').on(t.patientId),
    // The study list's order (QIDO, newest first): read off this index, never sorted, at any size of index.
    index('studies_date').on(t.studyDate, t.studyTime, t.studyUid),
    index('studies_accession').on(t.accessionNumber),
    index('studies_name').on(t.patientNameAlphabetic),
  ],
);

export const series = sqliteTable(
  'series',
  {
    seriesUid: text('series_uid').primaryKey(),
    studyUid: text('study_uid').notNull(),
    modality: text('modality'),
    seriesNumber: integer('series_number'),
    seriesDescription: text('series_description'),
    seriesDate: text('series_date'),
    seriesTime: text('series_time'),
    bodyPartExamined: text('body_part_examined'),
    performedProcedureStepStartDate: text('pps_start_date'),
    numInstances: integer('num_instances').notNull().default(0),
    json: text('json').notNull(),
  },
  (t) => [index('series_study').on(t.studyUid, t.seriesNumber)],
);

export const instances = sqliteTable(
  'instances',
  {
    sopUid: text('sop_uid').primaryKey(),
    seriesUid: text('series_uid').notNull(),
    studyUid: text('study_uid').notNull(),
    sopClassUid: text('sop_class_uid').notNull(),
    instanceNumber: integer('instance_number'),
    transferSyntaxUid: text('transfer_syntax_uid').notNull(),
    numberOfFrames: integer('number_of_frames').notNull(),
    rows: integer('rows'),
    columns: integer('columns'),
    objectKey: text('object_key').notNull(),
    size: integer('size').notNull(),
    sha256: text('sha256').notNull(),
    /** True for Deflated Explicit VR Little Endian: frame offsets refer to the inflated data set. */
    inflated: integer('inflated', { mode: 'boolean' }).notNull().default(false),
    /** JSON array of frames, each an array of [offset, length] ranges. */
    frames: text('frames').notNull(),
    /**
     * JSON object of bulk data paths (as in BulkDataURIs, after `/bulkdata/`), each its [offset, length] in the same
     * bytes as the frames. NULL for instances indexed before it was recorded: found and recorded at their first read.
     */
    bulkData: text('bulk_data'),
    json: text('json').notNull(),
    createdAt: integer('created_at').notNull(),
    /** Set when a read or a verify pass found the object missing or its bytes changed; cleared when a pass finds it whole. */
    damage: text('damage', { enum: ['missing', 'changed'] }),
    damageFoundAt: integer('damage_found_at'),
  },
  (t) => [index('instances_series').on(t.seriesUid, t.instanceNumber), index('instances_study').on(t.studyUid), index('instances_damage').on(t.damage)],
);

/**
 * Scheduled verify passes (src/integrity/): one row per kind of pass. A replica works on a pass only while it holds
 * the row's lease, so replicas over one index never walk the store twice at once; the cursor lets another resume it.
 */
export const integrityPasses = sqliteTable('integrity_passes', {
  name: text('name').primaryKey(),
  owner: text('owner'),
  leaseUntil: integer('lease_until').notNull(),
  startedAt: integer('started_at').notNull(),
  /** The last SOP Instance UID checked; '' before the first. */
  cursor: text('cursor').notNull(),
  /** JSON counts of the pass under way. */
  progress: text('progress').notNull(),
  /** JSON report of the last finished pass. */
  last: text('last'),
});

/** API keys (DESIGN decision 8): only the SHA-256 of a key is kept; the key itself is shown once. */
export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    role: text('role').notNull(),
    keyHash: text('key_hash').notNull(),
    /** The key's first characters, so that an administrator can tell keys apart without the secret. */
    hint: text('hint').notNull(),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at'),
    revokedAt: integer('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash').on(t.keyHash)],
);

/** Viewer tokens revoked one by one, kept until they would have expired anyway. */
export const revokedTokens = sqliteTable('revoked_tokens', {
  jti: text('jti').primaryKey(),
  expiresAt: integer('expires_at').notNull(),
  revokedAt: integer('revoked_at').notNull(),
});

/** Every viewer token of a study issued at or before `issuedBefore` (seconds) is revoked. */
export const studyTokenRevocations = sqliteTable('study_token_revocations', {
  studyUid: text('study_uid').primaryKey(),
  issuedBefore: integer('issued_before').notNull(),
});

/** Who touched which patient data, from where, and what they were answered. */
export const auditEvents = sqliteTable(
  'audit_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    at: integer('at').notNull(),
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

/** Staff who sign in (issue 14): only an Argon2id hash of the password is kept. */
export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    login: text('login').notNull(),
    displayName: text('display_name').notNull(),
    /** Comma-separated roles of principal.ts, e.g. `read,upload`. */
    roles: text('roles').notNull(),
    passwordHash: text('password_hash').notNull(),
    /** 1 while the password is one the user was given (CLI, reset) rather than chose. */
    mustChangePassword: integer('must_change_password').notNull(),
    createdAt: integer('created_at').notNull(),
    disabledAt: integer('disabled_at'),
    /** Failed sign-ins in a row, and until when the account refuses every password; shared by replicas. */
    failedSignIns: integer('failed_sign_ins').notNull(),
    lockedUntil: integer('locked_until'),
    /** Shown to the administrator: an account nobody has used for months is one to disable. */
    lastSignInAt: integer('last_sign_in_at'),
  },
  (t) => [uniqueIndex('users_login').on(t.login)],
);

/** Signed-in browsers: only the SHA-256 of a session id is kept, so the table's rows open nothing. */
export const sessions = sqliteTable(
  'sessions',
  {
    idHash: text('id_hash').primaryKey(),
    userId: text('user_id').notNull(),
    createdAt: integer('created_at').notNull(),
    lastSeenAt: integer('last_seen_at').notNull(),
  },
  (t) => [index('sessions_user').on(t.userId)],
);

/**
 * DICOM application entities the clinic knows (DIMSE has no passwords): what each may do, and where it calls from
 * and listens. The AE title is kept trimmed; it is case-sensitive (PS3.5 6.2, AE).
 */
export const applicationEntities = sqliteTable('application_entities', {
  aeTitle: text('ae_title').primaryKey(),
  /** A host name or IP address; NULL: any address. */
  host: text('host'),
  /** Where it listens (C-MOVE sends there); NULL: unknown. */
  port: integer('port'),
  store: integer('may_store', { mode: 'boolean' }).notNull(),
  query: integer('may_query', { mode: 'boolean' }).notNull(),
  retrieve: integer('may_retrieve', { mode: 'boolean' }).notNull(),
  description: text('description'),
  createdAt: integer('created_at').notNull(),
});

/**
 * The upload log (issue 15): one row per upload (a STOW-RS request, a command-line import, a DICOM association that
 * sent instances), who made it and from where, and what became of its instances.
 */
export const uploads = sqliteTable(
  'uploads',
  {
    id: text('id').primaryKey(),
    at: integer('at').notNull(),
    /** `stow`, `import` or `dicom`. */
    door: text('door').notNull(),
    /** As the audit trail names it: `key:<id>`, `user:<login>`, `ae:<AE title>`, `cli:<user>`. */
    credential: text('credential').notNull(),
    ip: text('ip'),
    stored: integer('stored').notNull(),
    /** Already stored with the same bytes. */
    present: integer('present').notNull(),
    refused: integer('refused').notNull(),
    /** JSON: the refusals, each { sopInstanceUid, failureReason, reason }, the first 100. */
    refusals: text('refusals').notNull(),
  },
  (t) => [index('uploads_at').on(t.at)],
);

/** The studies each upload's instances belong to, with their patient: what the log is searched by. */
export const uploadStudies = sqliteTable(
  'upload_studies',
  {
    uploadId: text('upload_id').notNull(),
    studyUid: text('study_uid').notNull(),
    patientId: text('patient_id'),
  },
  (t) => [uniqueIndex('upload_studies_upload').on(t.uploadId, t.studyUid), index('upload_studies_study').on(t.studyUid), index('upload_studies_patient').on(t.patientId)],
);

/**
 * Each study's changes as webhooks announce them (issue 16): every index write that stores into or removes from a
 * study raises its version, in the same transaction; a study is announced once its version has stood still for the
 * quiet time, by the one replica whose conditional update of announced_version wins.
 */
export const studyAnnouncements = sqliteTable(
  'study_announcements',
  {
    studyUid: text('study_uid').primaryKey(),
    version: integer('version').notNull(),
    announcedVersion: integer('announced_version').notNull(),
    changedAt: integer('changed_at').notNull(),
    /** The study was deleted whole: it is announced as deleted, with the patient and accession it had. */
    removed: integer('removed', { mode: 'boolean' }).notNull(),
    patientId: text('patient_id'),
    accessionNumber: text('accession_number'),
  },
  // Only the studies still to be announced: the announcer asks every second, and announced ones are nearly all.
  (t) => [index('study_announcements_pending').on(t.changedAt).where(sql`${t.announcedVersion} < ${t.version}`)],
);

/** The receivers an admin configured: where events go, the secret they are signed with, which events. */
export const webhooks = sqliteTable('webhooks', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  secret: text('secret').notNull(),
  /** Comma-separated event types. */
  events: text('events').notNull(),
  /** Loopback and link-local addresses allowed: the admin means a receiver on this host. */
  allowLocal: integer('allow_local', { mode: 'boolean' }).notNull(),
  description: text('description'),
  createdAt: integer('created_at').notNull(),
});

/**
 * The outbox: each event for each webhook, kept before it is sent, so that a restart loses none. A replica sends a
 * delivery only under its lease, taken by a conditional update, so that no two send it.
 */
export const webhookDeliveries = sqliteTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    webhookId: text('webhook_id').notNull(),
    eventType: text('event_type').notNull(),
    studyUid: text('study_uid').notNull(),
    /** The JSON sent, byte for byte the same at every try. */
    body: text('body').notNull(),
    createdAt: integer('created_at').notNull(),
    /** `pending`, `delivered` or `failed` (given up). */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull(),
    nextAttemptAt: integer('next_attempt_at').notNull(),
    /** Tries stop after this. */
    giveUpAt: integer('give_up_at').notNull(),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    lastAttemptAt: integer('last_attempt_at'),
    deliveredAt: integer('delivered_at'),
    leaseOwner: text('lease_owner'),
    leaseUntil: integer('lease_until').notNull(),
  },
  (t) => [index('webhook_deliveries_due').on(t.status, t.nextAttemptAt), index('webhook_deliveries_webhook').on(t.webhookId, t.createdAt)],
);

/**
 * The trash (issue 15): what a deletion took out of the index, kept for PACS_TRASH_DAYS so that an admin can put it
 * back whole. Its objects stay where they are in the store; the purge deletes them.
 */
export const trashEntries = sqliteTable(
  'trash_entries',
  {
    id: text('id').primaryKey(),
    deletedAt: integer('deleted_at').notNull(),
    purgeAfter: integer('purge_after').notNull(),
    studyUid: text('study_uid').notNull(),
    seriesUid: text('series_uid'),
    sopUid: text('sop_uid'),
    reason: text('reason').notNull(),
    credential: text('credential').notNull(),
    patientId: text('patient_id'),
    /** The study's summary as it was (patient, date, description), for the list. */
    studyJson: text('study_json').notNull(),
    /** JSON: the study row and the series rows as they were, to be put back if they went. */
    rows: text('rows').notNull(),
    instances: integer('instances').notNull(),
    bytes: integer('bytes').notNull(),
  },
  (t) => [index('trash_entries_purge').on(t.purgeAfter), index('trash_entries_deleted').on(t.deletedAt)],
);

export const trashInstances = sqliteTable(
  'trash_instances',
  {
    entryId: text('entry_id').notNull(),
    sopUid: text('sop_uid').notNull(),
    objectKey: text('object_key').notNull(),
    /** JSON: the instance row as it was. */
    row: text('row').notNull(),
  },
  (t) => [index('trash_instances_entry').on(t.entryId), index('trash_instances_sop').on(t.sopUid)],
);

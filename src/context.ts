import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Auth } from './auth/middleware.js';
import type { Principal } from './auth/principal.js';
import type { Catalog } from './catalog/catalog.js';
import type { Config } from './config.js';
import type { IngestDeps } from './ingest/ingest.js';
import type { UploadLog } from './ingest/upload-log.js';
import type { VerifySchedule } from './integrity/schedule.js';
import type { StudyEvents } from './events/study-events.js';
import type { TrashPurge } from './trash/trash.js';
import type { ReadService } from './read/read-service.js';
import type { Renderer } from './render/render.js';
import type { Transcoder } from './transcode/transcoder.js';
import type { ObjectStore } from './storage/object-store.js';

/** What the routers need, built once in main.ts. */
export type Services = {
  config: Config;
  store: ObjectStore;
  catalog: Catalog;
  ingest: IngestDeps;
  /** Every upload one record (issue 15), whichever door it came by. */
  uploads: UploadLog;
  auth: Auth;
  /** Instances, frames, bulk data and metadata as stored: what every read route and rendering read through. */
  reads: ReadService;
  /** Rendered images and thumbnails, cached under derived/. */
  renderer: Renderer;
  transcoder: Transcoder;
  log: Logger;
  /** Closes the index, stops the codec workers and removes this process's spool folder. */
  close(): Promise<void>;
  /** The scheduled verify pass (PACS_VERIFY_INTERVAL); the server starts it, close() stops it. */
  verifySchedule: VerifySchedule;
  /** Study-available events to webhooks; the server starts them, close() stops them. */
  studyEvents: StudyEvents;
  /** Empties the trash of deletions past PACS_TRASH_DAYS; the server starts it, close() stops it. */
  trashPurge: TrashPurge;
};

/** Hono context values, typed once (STYLE.md). */
export type Env = {
  /** Present under @hono/node-server: the Node request, whose body streams faster than its web wrapper. */
  Bindings: { incoming?: IncomingMessage };
  Variables: {
    log: Logger;
    requestId: string;
    /** The client's address, as the socket says or, behind a trusted proxy, X-Forwarded-For (auth/proxies.ts). */
    client: { address: string; via?: string };
    /** The server's base URL as this request reached it, each part checked (dicomweb/urls.ts `requestBase`). */
    requestBase: string;
    /** PACS_PUBLIC_URL, else `requestBase`: what URLs handed out begin with. */
    publicBase: string;
    /** Who is asking; unset when nobody said and anonymous reads are off. */
    principal?: Principal;
    /** How a refused credential is named in the audit trail and the log, e.g. `rejected:token:<jti>`. */
    rejectedCredential?: string;
    /** The studies the caller may read when it is limited to some (a viewer token); set by dicomwebAccess. */
    readableStudies?: string[];
    /** The studies a request touched when its path does not name them (a STOW to /studies, a link by accession). */
    auditStudyUids?: string[];
    /** A reason the client gave in a header (a deletion's), recorded with the request's query. */
    auditReason?: string;
  };
};

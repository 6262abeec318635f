import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ApiKeys } from './auth/api-keys.js';
import { AuditLog } from './auth/audit.js';
import { AuthFailures } from './auth/auth-failures.js';
import { Origins } from './auth/origins.js';
import { Sessions } from './auth/sessions.js';
import { SetupCode } from './auth/setup-code.js';
import { Users } from './auth/users.js';
import { ImageLinks } from './auth/image-links.js';
import { openSigningKeys } from './auth/signing-keys.js';
import { ViewerTokens } from './auth/viewer-tokens.js';
import { openCatalog } from './catalog/open.js';
import type { Config } from './config.js';
import type { Services } from './context.js';
import { GroupCommit } from './ingest/group-commit.js';
import { UploadLog } from './ingest/upload-log.js';
import { VerifySchedule } from './integrity/schedule.js';
import { StudyEvents } from './events/study-events.js';
import { TrashPurge } from './trash/trash.js';
import { ReadService } from './read/read-service.js';
import { MemoryBudget } from './render/memory-budget.js';
import { Renderer } from './render/render.js';
import { Transcoder } from './transcode/transcoder.js';
import { DerivedCache } from './storage/derived-cache.js';
import { FileObjectStore } from './storage/fs.js';
import type { ObjectStore } from './storage/object-store.js';
import { S3ObjectStore } from './storage/s3.js';

/** Opens the object store and the index named by the configuration; main.ts and the CLI share it. */
export async function openServices(config: Config, log: Logger): Promise<Services> {
  const spoolDir = await freshSpoolDir(path.join(config.storageDir, 'tmp'));
  const store: ObjectStore = config.s3 ? await S3ObjectStore.open(config.s3, log) : await new FileObjectStore(path.join(config.storageDir, 'objects')).init();
  const catalog = await openCatalog(config, log);
  const records = catalog.access();
  const signingKeys = await openSigningKeys(config);
  const audit = new AuditLog(records, log, config.auditRefusedPerMinute);
  const uploads = new UploadLog(catalog, log);
  const failures = new AuthFailures(config.authFailuresPerMinute);
  const auth = {
    keys: new ApiKeys(records),
    tokens: new ViewerTokens(signingKeys, records, config.viewerToken, config.publicUrl),
    imageLinks: new ImageLinks(signingKeys, config.publicUrl),
    audit,
    anonymousRead: config.anonymousRead,
    failures,
    origins: new Origins(config.corsOrigins),
    users: new Users(catalog.users(), config.signInLockout, failures),
    sessions: new Sessions(catalog.users(), config.session),
    setup: new SetupCode(),
  };
  if (config.adminKey) await auth.keys.seedAdmin(config.adminKey);
  // Renderings and inflated copies share one budget (DESIGN decision 15).
  const derived = new DerivedCache(store, config.derivedCacheBytes, log);
  const reads = new ReadService(store, catalog, log, { maxInflatedBytes: config.maxInstanceBytes }, { cache: derived, tmpDir: spoolDir });
  // Renderings and conversions share one memory budget: both decode frames.
  const decoding = { maxFrameBytes: config.renderMaxFrameBytes, budget: new MemoryBudget(config.renderMemoryBytes) };
  const renderer = new Renderer(derived, reads, log, decoding);
  const transcoder = new Transcoder(reads, store, derived, spoolDir, log, decoding);
  const ingest = { durable: new GroupCommit(store, catalog, config.overwriteDifferent, log), spoolDir, maxInstanceBytes: config.maxInstanceBytes, log };
  // Started by main.ts only: the command line runs its own pass when asked.
  const verifySchedule = new VerifySchedule({ store, catalog, ingest, log }, config.verifyInterval);
  const studyEvents = new StudyEvents(catalog, log, config.events);
  const trashPurge = new TrashPurge({ catalog, store, durable: ingest.durable, log }, config.trashMs);
  return {
    config,
    store,
    catalog,
    log,
    auth,
    reads,
    renderer,
    transcoder,
    ingest,
    uploads,
    verifySchedule,
    studyEvents,
    trashPurge,
    async close() {
      await verifySchedule.stop();
      await studyEvents.stop();
      await trashPurge.stop();
      await audit.close();
      await uploads.close();
      await renderer.close();
      await catalog.close();
      await store.close();
      await fs.rm(spoolDir, { recursive: true, force: true });
    },
  };
}

/**
 * Each process (server, CLI import, migrate) spools into its own folder. Folders of processes that are gone hold
 * uploads that were never acknowledged: they go.
 */
export async function freshSpoolDir(parent: string): Promise<string> {
  // Made first, this makes the data folder too: readable by the server's user only, like all it holds.
  await fs.mkdir(parent, { recursive: true, mode: 0o700 });
  for (const name of await fs.readdir(parent)) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid !== process.pid && !isRunning(pid)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
  }
  const dir = path.join(parent, String(process.pid));
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { mode: 0o700 });
  return dir;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { LoggedUpload, Refusal, Upload, UploadDoor, UploadRecords, UploadSearch } from '../catalog/catalog.js';
import { WriteBehind } from '../catalog/write-behind.js';
import type { InstanceOutcome } from './ingest.js';

/**
 * What became of one upload's instances, whatever door they came by, for the upload log (issue 15): a STOW-RS
 * request, a command-line import, a DICOM association. Its record is written once the upload is over.
 */
export class UploadTally {
  private readonly upload: Upload;

  /** `outcomes`: what an upload that is over already came to; a door that goes on adds them as they come. */
  constructor(door: UploadDoor, credential: string, ip: string | null, outcomes: readonly InstanceOutcome[] = []) {
    this.upload = { id: randomUUID(), at: Date.now(), door, credential, ip, stored: 0, present: 0, refused: 0, refusals: [], studyUids: [] };
    for (const outcome of outcomes) this.add(outcome);
  }

  /** Instances counted so far. */
  get instances(): number {
    return this.upload.stored + this.upload.present + this.upload.refused;
  }

  add(outcome: InstanceOutcome): void {
    const u = this.upload;
    if (outcome.status === 'failed') {
      u.refused++;
      u.refusals.push({ sopInstanceUid: outcome.sopInstanceUid ?? null, failureReason: outcome.failureReason, reason: outcome.reason } satisfies Refusal);
    } else {
      if (outcome.status === 'stored') u.stored++;
      else u.present++;
      if (!u.studyUids.includes(outcome.studyUid)) u.studyUids.push(outcome.studyUid);
    }
  }

  /** The record, once the upload is over. */
  get record(): Upload {
    return this.upload;
  }
}

/**
 * The upload log's writer: every upload one record, written behind the upload's answer in batches, as the audit
 * trail is (one commit per upload would cost a one-file upload a second transaction). An upload whose record cannot be
 * written is not undone: its instances are stored and in the audit trail; the write is retried, the failure logged.
 */
export class UploadLog {
  private readonly records: WriteBehind<Upload>;

  constructor(
    private readonly index: UploadRecords,
    log: Logger,
  ) {
    this.records = new WriteBehind((batch) => index.recordUploads(batch), log, 'upload log records');
  }

  /** An upload that counted no instance (a request refused whole) is not one. */
  add(tally: UploadTally): void {
    if (tally.instances > 0) this.records.add(tally.record);
  }

  async uploads(search: UploadSearch): Promise<LoggedUpload[]> {
    await this.records.flush();
    return this.index.uploads(search);
  }

  /** Writes what waits, and stops retrying (the index is about to close). */
  close(): Promise<void> {
    return this.records.close();
  }

  flush(): Promise<void> {
    return this.records.flush();
  }
}

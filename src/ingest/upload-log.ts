import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Refusal, Upload, UploadDoor, UploadRecords } from '../catalog/catalog.js';
import type { InstanceOutcome } from './ingest.js';

/**
 * What became of one upload's instances, whatever door they came by, for the upload log (issue 15): a STOW-RS
 * request, a command-line import, a DICOM association. Its record is written once the upload is over.
 */
export class UploadTally {
  private readonly upload: Upload;

  constructor(door: UploadDoor, credential: string, ip: string | null) {
    this.upload = { id: randomUUID(), at: Date.now(), door, credential, ip, stored: 0, present: 0, refused: 0, refusals: [], studyUids: [] };
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

  /**
   * Writes the record. An upload whose record cannot be written is not undone: its instances are stored and in the
   * audit trail; the failure is logged.
   */
  async record(records: UploadRecords, log: Logger): Promise<void> {
    if (this.instances === 0) return;
    await records.recordUpload(this.upload).catch((err: unknown) => log.error({ err, upload: this.upload.id, door: this.upload.door }, 'an upload could not be written to the upload log'));
  }
}

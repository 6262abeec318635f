import type { Logger } from 'pino';
import { CatalogUnavailable } from '../catalog/catalog.js';
import type { IndexRecord } from '../catalog/record.js';
import { DicomParseError, fileMetaUids, type DifferingMetaUids } from '../dicom/parse.js';
import { executablePreamble } from '../dicom/preamble.js';
import { UidError } from '../dicom/uid.js';
import { DiskFull } from '../errors.js';
import { instanceKey, instanceKeyParts, newVersion } from '../storage/keys.js';
import { StoreUnavailable } from '../storage/object-store.js';
import type { GroupCommit } from './group-commit.js';
import { readInstanceHeader } from './read-header.js';
import { discard, spool, TooLarge, type Spooled } from './spool.js';

/** PS3.4 Annex B / PS3.7 Annex C status codes used as FailureReason (0008,1197). */
export const FailureReason = {
  ProcessingFailure: 0x0110,
  DuplicateSopInstance: 0x0111,
  OutOfResources: 0xa700,
  DataSetDoesNotMatch: 0xa900,
  CannotUnderstand: 0xc000,
} as const;

/** The UIDs of an instance whose header could be read. */
export type InstanceIdentity = { sopClassUid: string; sopInstanceUid: string; studyUid: string; seriesUid: string };

/** What became of one instance: every door (STOW, import, copy) reads this and answers in its own terms. */
export type InstanceOutcome =
  /**
   * Stored now. With executablePreamble, its preamble opens with that executable header (dicom/preamble.ts): to be
   * logged and audited. With differingMetaUids, its file meta information names other UIDs than its data set, whose
   * UIDs it goes by: to be told.
   */
  | ({ status: 'stored' } & Noted & InstanceIdentity)
  /** Stored earlier with the same bytes: nothing was written. */
  | ({ status: 'duplicate' } & Noted & InstanceIdentity)
  /** Not kept, for `reason` (FailureReason `failureReason`); the UIDs when its header could be read. */
  | ({ status: 'failed'; failureReason: number; reason: string } & Partial<InstanceIdentity>);

/** What a door tells about an instance kept as sent. */
type Noted = { executablePreamble?: string; differingMetaUids?: DifferingMetaUids };

/** One instance's place in a batch: its outcome settles when the batch's commit does (or at once, when refused early). */
export type Receipt = { outcome: Promise<InstanceOutcome> };

/** The body, or undefined when it holds no byte; the chunks already read are handed on. */
async function nonEmpty(body: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array> | undefined> {
  const chunks = body[Symbol.asyncIterator]();
  let first = await chunks.next();
  while (!first.done && first.value.byteLength === 0) first = await chunks.next();
  if (first.done) return undefined;
  const head = first.value;
  return (async function* () {
    yield head;
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
  })();
}

export type IngestDeps = {
  durable: GroupCommit;
  spoolDir: string;
  maxInstanceBytes: number;
  log: Logger;
};

type Pending = {
  spooled: Spooled;
  record: IndexRecord;
  identity: InstanceIdentity;
  noted: Noted;
  settle: (outcome: InstanceOutcome) => void;
  abandon: (reason: unknown) => void;
};

/** The bytes received are not those the sender vouched for (a SHA-256 known beforehand): nothing was kept. */
export class ChecksumMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly size: number,
  ) {
    super(`its ${size} bytes have the SHA-256 ${actual}, not the ${expected} expected`);
  }
}

/**
 * One batch of instances (a STOW request, an import chunk): each is spooled and checked as it arrives,
 * then all good ones are made durable together and indexed in one transaction (DESIGN decision 2).
 */
export class IngestBatch {
  private readonly pending: Pending[] = [];

  constructor(
    private readonly deps: IngestDeps,
    private readonly expectedStudyUid?: string,
    /**
     * The meta information was written by the door from what the sender named (a C-STORE's command): a data set of
     * other UIDs is refused, not stored under them, for the sender would take its instance for stored.
     */
    private readonly metaNamesTheInstance = false,
  ) {}

  /**
   * Receives one instance; resolves once its bytes are read, with a receipt whose outcome settles at commit. Never
   * throws for a bad instance: it becomes a failed outcome. A `copy` of a stored instance (backup, migrate) keeps its
   * object key, so that a store moved whole or read in place still holds it there; bytes whose SHA-256 differs from
   * the copy's are not taken: ChecksumMismatch is thrown (a copy whose source is damaged, not a bad upload).
   */
  async add(body: AsyncIterable<Uint8Array>, copy?: { sha256: string; objectKey: string }): Promise<Receipt> {
    let spooled: Spooled | undefined;
    try {
      const content = await nonEmpty(body);
      // Empty parts cost no file: a body of 100,000 of them must not mean 100,000 files opened and synced.
      if (!content) return this.reject(FailureReason.CannotUnderstand, 'the part is empty: it holds no DICOM file');
      spooled = await spool(content, this.deps.spoolDir, this.deps.maxInstanceBytes);
      if (copy && spooled.sha256 !== copy.sha256) throw new ChecksumMismatch(copy.sha256, spooled.sha256, spooled.size);
      const header = await readInstanceHeader(spooled, this.deps.maxInstanceBytes);
      const identity: InstanceIdentity = {
        sopClassUid: header.sopClassUID,
        sopInstanceUid: header.sopInstanceUID,
        studyUid: header.studyInstanceUID,
        seriesUid: header.seriesInstanceUID,
      };
      const executable = executablePreamble(spooled.head);
      if (executable) {
        this.deps.log.warn({ sopInstanceUid: header.sopInstanceUID, studyUid: header.studyInstanceUID, executable }, 'an instance whose preamble holds an executable header was received');
      }
      const differing = header.differingMetaUids;
      if (differing) {
        this.deps.log.warn(
          {
            sopInstanceUid: header.sopInstanceUID,
            mediaStorageSopInstanceUid: differing.mediaStorageSOPInstanceUID,
            sopClassUid: header.sopClassUID,
            mediaStorageSopClassUid: differing.mediaStorageSOPClassUID,
            studyUid: header.studyInstanceUID,
          },
          "an instance whose file meta information names other UIDs than its data set was received: it goes by the data set's, its bytes kept as sent",
        );
      }
      const noted: Noted = { ...(executable ? { executablePreamble: executable } : {}), ...(differing ? { differingMetaUids: differing } : {}) };
      if (differing && this.metaNamesTheInstance) {
        await discard(spooled);
        const named = `${differing.mediaStorageSOPInstanceUID ?? header.sopInstanceUID} of class ${differing.mediaStorageSOPClassUID ?? header.sopClassUID}`;
        return settled({ ...identity, ...failure(FailureReason.DataSetDoesNotMatch, `the request names SOP Instance ${named}, but the data set is ${header.sopInstanceUID} of class ${header.sopClassUID}`) });
      }
      if (this.expectedStudyUid && header.studyInstanceUID !== this.expectedStudyUid) {
        await discard(spooled);
        return settled({ ...identity, ...failure(FailureReason.DataSetDoesNotMatch, `StudyInstanceUID ${header.studyInstanceUID} is not the study ${this.expectedStudyUid} named in the URL`) });
      }
      const record: IndexRecord = {
        studyUid: header.studyInstanceUID,
        seriesUid: header.seriesInstanceUID,
        sopUid: header.sopInstanceUID,
        sopClassUid: header.sopClassUID,
        transferSyntaxUid: header.transferSyntaxUID,
        objectKey: objectKeyOf(identity, spooled.sha256, copy?.objectKey),
        size: spooled.size,
        sha256: spooled.sha256,
        inflated: header.inflated,
        frames: header.frames,
        bulkData: header.bulkData,
        json: header.json,
      };
      const accepted = spooled;
      const outcome = new Promise<InstanceOutcome>((settle, abandon) =>
        this.pending.push({ spooled: accepted, record, identity, noted, settle, abandon }),
      );
      // A batch that fails whole rejects every outcome; a caller that answers with the batch's error need not read them.
      outcome.catch(() => {});
      return { outcome };
    } catch (e) {
      if (spooled) await discard(spooled);
      // Too large to receive (the caller's reader skips the rest of the part) or to inflate; its meta information,
      // in its first bytes, still names it for the answer (PS3.18 Table I.1-1 asks for both UIDs).
      if (e instanceof TooLarge) return settled({ ...fileMetaUids(e.head ?? spooled?.head ?? Buffer.alloc(0)), ...failure(FailureReason.OutOfResources, e.message) });
      // Refused for its content: the UIDs its meta information names, when it names them, say which file it was.
      if (e instanceof DicomParseError || e instanceof UidError) return settled({ ...fileMetaUids(spooled?.head ?? Buffer.alloc(0)), ...failure(FailureReason.CannotUnderstand, e.message) });
      throw e;
    }
  }

  /** Refuses an instance that never reached parsing (bad part headers, part too large in framing). */
  reject(reason: number, text: string): Receipt {
    return settled(failure(reason, text));
  }

  /**
   * Makes every accepted instance durable, then indexes them; each receipt's outcome settles with it. Throws when the
   * batch fails whole (a full disk, the store or the index away): nothing is kept, and the outcomes reject alike.
   */
  async commit(): Promise<void> {
    const { durable, log } = this.deps;
    const toStore = this.pending.splice(0);
    try {
      await this.awaitSpools(toStore);
    } catch (e) {
      for (const p of toStore) p.abandon(e);
      throw e;
    }
    if (toStore.length === 0) return;
    try {
      const results = await durable.commit(toStore.map((p) => ({ record: p.record, localPath: p.spooled.path })));
      for (const [i, result] of results.entries()) {
        const p = toStore[i]!;
        const known = { ...p.identity, ...p.noted };
        if (result === 'stored') {
          p.settle({ status: 'stored', ...known });
          continue;
        }
        await discard(p.spooled); // not moved into the store: this instance is there already
        if (result === 'duplicate') p.settle({ status: 'duplicate', ...known });
        else p.settle({ ...p.identity, ...failure(FailureReason.DuplicateSopInstance, `SOP Instance ${p.record.sopUid} is already stored with different content; delete it first or ask the administrator to allow overwriting`) });
      }
    } catch (e) {
      log.error({ err: e }, 'storing a batch failed');
      await Promise.all(toStore.map((p) => discard(p.spooled)));
      const full = DiskFull.of(e);
      if (full || e instanceof StoreUnavailable || e instanceof CatalogUnavailable) {
        // Not these instances' fault: the whole request is answered 507 (disk full) or 503 with Retry-After, and nothing is kept.
        for (const p of toStore) p.abandon(full ?? e);
        throw full ?? e;
      }
      for (const p of toStore) p.settle({ ...p.identity, ...failure(FailureReason.ProcessingFailure, 'the object store or index could not be written; nothing was kept, try again') });
    }
  }

  /** Drops everything received so far (the request itself failed): nothing is stored. */
  async abort(): Promise<void> {
    const dropped = this.pending.splice(0);
    await Promise.all(dropped.map((p) => discard(p.spooled)));
    for (const p of dropped) p.abandon(new Error('the batch was aborted'));
  }

  /**
   * Waits until every spooled file is on disk; one that could not be written fails alone and is taken out. A full
   * disk fails the whole batch (DiskFull, nothing kept): its neighbours would meet it again in the index.
   */
  private async awaitSpools(toStore: Pending[]): Promise<void> {
    const results = await Promise.allSettled(toStore.map((p) => p.spooled.synced));
    const full = results.map((r) => (r.status === 'rejected' ? DiskFull.of(r.reason) : undefined)).find((f) => f !== undefined);
    if (full) {
      this.deps.log.error({ err: full }, 'writing an upload to the spool folder met a full disk');
      await Promise.all(toStore.map((p) => discard(p.spooled)));
      throw full;
    }
    for (let i = results.length - 1; i >= 0; i--) {
      const result = results[i]!;
      if (result.status === 'fulfilled') continue;
      const [p] = toStore.splice(i, 1);
      this.deps.log.error({ err: result.reason }, 'writing an upload to the spool folder failed');
      p!.settle({ ...p!.identity, ...failure(FailureReason.OutOfResources, `the server could not write this instance to its disk (${(result.reason as NodeJS.ErrnoException).code ?? 'I/O error'}); nothing was kept, tell the administrator`) });
      await discard(p!.spooled);
    }
  }
}

/** A copy keeps its key only when that is a key of this very instance (storage/keys.ts); else a new version. */
function objectKeyOf(i: InstanceIdentity, sha256: string, copiedKey: string | undefined): string {
  const parts = copiedKey === undefined ? undefined : instanceKeyParts(copiedKey);
  if (parts && parts.studyUid === i.studyUid && parts.seriesUid === i.seriesUid && parts.sopUid === i.sopInstanceUid) return copiedKey!;
  return instanceKey(i.studyUid, i.seriesUid, i.sopInstanceUid, newVersion(sha256));
}

/** What a door tells its client about an instance whose file meta information names other UIDs than its data set. */
export function differingMetaUidsNote(o: InstanceIdentity & { differingMetaUids: DifferingMetaUids }): string {
  // Written by the sender, not checked as a UID: shown no longer than a UID may be.
  const shown = (value: string) => (value.length > 64 ? `${value.slice(0, 64)}...` : value);
  const { mediaStorageSOPInstanceUID: metaInstance, mediaStorageSOPClassUID: metaClass } = o.differingMetaUids;
  const differences = [
    ...(metaInstance ? [`MediaStorageSOPInstanceUID (0002,0003) ${shown(metaInstance)} where its data set has SOPInstanceUID (0008,0018) ${o.sopInstanceUid}`] : []),
    ...(metaClass ? [`MediaStorageSOPClassUID (0002,0002) ${shown(metaClass)} where its data set has SOPClassUID (0008,0016) ${o.sopClassUid}`] : []),
  ];
  return `its file meta information names ${differences.join(', and ')}; stored as sent, under the data set's UIDs`;
}

function failure(failureReason: number, reason: string): { status: 'failed'; failureReason: number; reason: string } {
  return { status: 'failed', failureReason, reason };
}

function settled(outcome: InstanceOutcome): Receipt {
  return { outcome: Promise.resolve(outcome) };
}

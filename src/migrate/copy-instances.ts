import type { Readable } from 'node:stream';
import { CatalogUnavailable, type Catalog } from '../catalog/catalog.js';
import { ChecksumMismatch, FailureReason, IngestBatch, type IngestDeps, type Receipt } from '../ingest/ingest.js';
import { ObjectNotFound, StoreUnavailable, type ObjectStore } from '../storage/object-store.js';

/** Why an instance of the source is not in the target. */
export type FailureKind =
  /** The source object's bytes no longer match the SHA-256 recorded at ingest: damaged, so not copied. */
  | 'damaged'
  /** The index names an object the source store does not hold. */
  | 'missing'
  /** The target already holds other bytes under the same SOP Instance UID. */
  | 'conflict'
  /** The object could not be read, or the target refused it, for another reason (said in `detail`). */
  | 'error';

export type CopyFailure = { kind: FailureKind; sopUid: string; objectKey: string; detail: string };

export type CopyCounts = {
  /** In the source index when the copy began (instances stored during the run may add to what is seen). */
  total: { instances: number; bytes: number };
  copied: number;
  /** In the target already, with the same SHA-256: skipped. */
  present: number;
  failed: number;
  /** Deleted from the source while the copy ran: nothing to copy, nothing lost. */
  vanished: number;
  bytesCopied: number;
  /** Bytes of the instances settled so far, copied or not: how far the copy has come. */
  bytesSettled: number;
};

export type CopyResult = CopyCounts & {
  /** The first failures, in full (a damaged disk could fail millions: the count is in `failed`). */
  failures: CopyFailure[];
  byKind: Record<FailureKind, number>;
  /** Set when the copy stopped early: the source or the target could not be reached, or it was interrupted. */
  stopped?: Error;
};

export type CopyOptions = {
  /** Instances read, verified and written at once. */
  parallel: number;
  /** Called after each instance settles; cheap, so a caller may redraw a progress bar as it likes. */
  onProgress?: (counts: Readonly<CopyCounts>) => void;
  /** Aborted: no further instance is started; those in flight finish, and the result says it stopped. */
  signal?: AbortSignal;
  /**
   * An instance the target holds with other bytes is copied over it (the target's ingest must overwrite): a backup
   * follows an instance replaced in the source. Otherwise it is a conflict, left as it is.
   */
  replace?: boolean;
};

/** Source instances whose presence in the target is asked in one query. */
const PAGE = 256;
/** Failures kept in full for the report. */
const MAX_LISTED = 1000;

/**
 * Copies every instance of the source index into the target, as `migrate` does: an instance the target holds
 * with the same SHA-256 is skipped; any other is streamed from the source store into the target's spool while
 * hashed, compared with the SHA-256 the source recorded at ingest, then parsed and stored by the target's own
 * ingest path (object durable first, index row after: DESIGN decision 2). The source is only read.
 */
export async function copyInstances(
  source: { catalog: Catalog; store: ObjectStore },
  target: { catalog: Catalog; ingest: IngestDeps },
  options: CopyOptions,
): Promise<CopyResult> {
  const result: CopyResult = {
    total: await source.catalog.objectTotals(),
    copied: 0,
    present: 0,
    failed: 0,
    vanished: 0,
    bytesCopied: 0,
    bytesSettled: 0,
    failures: [],
    byKind: { damaged: 0, missing: 0, conflict: 0, error: 0 },
  };
  type Row = { sopUid: string; objectKey: string; size: number; sha256: string };
  const settle = (row: Row, outcome: 'copied' | 'present' | 'vanished') => {
    result[outcome]++;
    if (outcome === 'copied') result.bytesCopied += row.size;
    result.bytesSettled += row.size;
    options.onProgress?.(result);
  };
  const fail = (row: Row, kind: FailureKind, detail: string) => {
    result.failed++;
    result.byKind[kind]++;
    if (result.failures.length < MAX_LISTED) result.failures.push({ kind, sopUid: row.sopUid, objectKey: row.objectKey, detail });
    result.bytesSettled += row.size;
    options.onProgress?.(result);
  };

  /** A failure to read the source may only mean that the instance was deleted, or replaced, while the copy ran. */
  const changedMeanwhile = async (row: Row): Promise<'vanished' | 'replaced' | undefined> => {
    const now = (await source.catalog.checksumsOf([row.sopUid])).get(row.sopUid);
    return now === undefined ? 'vanished' : now !== row.sha256 ? 'replaced' : undefined;
  };

  const copyOne = async (row: Row): Promise<void> => {
    let body: Readable;
    try {
      body = await source.store.get(row.objectKey);
    } catch (e) {
      if (!(e instanceof ObjectNotFound)) throw e;
      const meanwhile = await changedMeanwhile(row);
      if (meanwhile === 'vanished') return settle(row, 'vanished');
      return fail(row, 'missing', 'the index names this object but the source store does not hold it');
    }
    // The source took this instance, so the target's limit on receiving one does not apply to copying it.
    const batch = new IngestBatch({ ...target.ingest, maxInstanceBytes: Math.max(target.ingest.maxInstanceBytes, row.size) });
    let receipt: Receipt;
    try {
      receipt = await batch.add(body, { sha256: row.sha256, objectKey: row.objectKey });
    } catch (e) {
      body.destroy();
      if (!(e instanceof ChecksumMismatch)) throw e;
      const meanwhile = await changedMeanwhile(row);
      if (meanwhile === 'vanished') return settle(row, 'vanished');
      if (meanwhile === 'replaced') return fail(row, 'error', 'it was replaced in the source while the copy ran; run the command again');
      const damage = `its ${e.size} bytes hash to ${e.actual.slice(0, 16)}…, not to the SHA-256 ${e.expected.slice(0, 16)}… recorded when it was stored`;
      return fail(row, 'damaged', `the source object is damaged (${damage}); it was not copied`);
    }
    await batch.commit();
    const outcome = await receipt.outcome;
    if (outcome.status === 'stored') return settle(row, 'copied');
    if (outcome.status === 'duplicate') return settle(row, 'present');
    if (outcome.failureReason === FailureReason.DuplicateSopInstance) return fail(row, 'conflict', conflictDetail);
    return fail(row, 'error', `the target did not take it: ${outcome.reason}`);
  };

  const running = new Set<Promise<void>>();
  const start = (row: Row) => {
    const task: Promise<void> = copyOne(row)
      .catch((e: unknown) => {
        if (isAway(e)) result.stopped ??= e as Error;
        else fail(row, 'error', (e as Error)?.message ?? String(e));
      })
      .finally(() => running.delete(task));
    running.add(task);
  };

  const halted = () => {
    if (options.signal?.aborted) result.stopped ??= new Error('interrupted');
    return result.stopped !== undefined;
  };

  const copyPage = async (page: Row[]) => {
    // Cheap resumption: one query asks the target about a whole page.
    const known = await target.catalog.checksumsOf(page.map((r) => r.sopUid));
    for (const row of page) {
      if (halted()) return;
      const there = known.get(row.sopUid);
      if (there === row.sha256) settle(row, 'present');
      else if (there !== undefined && !options.replace) fail(row, 'conflict', conflictDetail);
      else {
        while (running.size >= options.parallel) await Promise.race(running);
        if (halted()) return;
        start(row);
      }
    }
  };

  try {
    let page: Row[] = [];
    for await (const row of source.catalog.allObjects()) {
      page.push(row);
      if (page.length < PAGE) continue;
      await copyPage(page);
      page = [];
      if (halted()) break;
    }
    if (!halted()) await copyPage(page);
  } catch (e) {
    if (!isAway(e)) throw e;
    result.stopped ??= e as Error;
  } finally {
    await Promise.allSettled(running);
  }
  return result;
}

const conflictDetail = 'the target already holds different bytes under this SOP Instance UID; it was left as it is';

/** The source or the target is out of reach: every other instance would fail the same way, so the copy stops. */
function isAway(e: unknown): boolean {
  return e instanceof StoreUnavailable || e instanceof CatalogUnavailable;
}

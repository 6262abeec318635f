import type { IndexOutcome } from './catalog.js';

/**
 * What indexing one upload does to the index (DESIGN decision 7), decided in this one place for the group commit
 * (before any object is put) and for the index transaction (against the rows as they are when it commits).
 */
export type Decision = 'new' | 'replace' | 'duplicate' | 'conflict';

export type Upload = { sopUid: string; sha256: string };

/**
 * One decision per upload, in order, given the SHA-256 the index holds per SOP Instance UID. Within one group the
 * first upload of an instance wins: a later one with its bytes is a duplicate, with other bytes a conflict even when
 * overwriting, since puts and renames in parallel have no order.
 */
export function decideUploads(uploads: readonly Upload[], indexed: ReadonlyMap<string, string>, overwrite: boolean): Decision[] {
  const current = new Map(indexed);
  const claimed = new Set<string>();
  return uploads.map(({ sopUid, sha256 }) => {
    const existing = current.get(sopUid);
    if (existing === sha256) return 'duplicate';
    if (existing !== undefined && (!overwrite || claimed.has(sopUid))) return 'conflict';
    current.set(sopUid, sha256);
    claimed.add(sopUid);
    return existing === undefined ? 'new' : 'replace';
  });
}

/** Whether the decision puts the upload's bytes in the index. */
export function takes(decision: Decision): boolean {
  return decision === 'new' || decision === 'replace';
}

/** The decision as the uploader hears it: new or replacing bytes were stored. */
export function outcomeOf(decision: Decision): IndexOutcome {
  return takes(decision) ? 'stored' : (decision as Exclude<Decision, 'new' | 'replace'>);
}

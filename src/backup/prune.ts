import type { Catalog } from '../catalog/catalog.js';
import { instanceKeyParts } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';

/** Backup instances whose presence in the source is asked in one query. */
const PAGE = 256;

/**
 * Removes from a backup the instances its source no longer indexes (deleted there since the last backup), index row
 * first and object after (DESIGN decision 2), so that a restore does not bring back what was deleted on purpose.
 * Resolves with how many were removed.
 */
export async function pruneDeleted(source: Catalog, backup: { catalog: Catalog; store: ObjectStore }): Promise<number> {
  type Scope = { studyUid: string; seriesUid: string; sopUid: string };
  const gone: Scope[] = [];
  let page: Scope[] = [];
  const ask = async () => {
    const kept = await source.checksumsOf(page.map((s) => s.sopUid));
    gone.push(...page.filter((s) => !kept.has(s.sopUid)));
    page = [];
  };
  for await (const { objectKey } of backup.catalog.allObjects()) {
    const uids = instanceKeyParts(objectKey);
    if (!uids) continue;
    page.push(uids);
    if (page.length >= PAGE) await ask();
  }
  await ask();
  for (const scope of gone) {
    const removal = await backup.catalog.remove(scope);
    for (const objectKey of removal.objectKeys) await backup.store.delete(objectKey);
  }
  return gone.length;
}

import type { Catalog } from '../catalog/catalog.js';
import type { ObjectStore } from '../storage/object-store.js';

/** Backup instances whose presence in the source is asked in one query. */
const PAGE = 256;
/** Object keys as storage/keys.ts `instanceKey` makes them. */
const INSTANCE_KEY = /^studies\/([0-9.]+)\/series\/([0-9.]+)\/instances\/([0-9.]+)\.dcm$/;

/**
 * Removes from a backup the instances its source no longer indexes (deleted there since the last backup), index row
 * first and object after (DESIGN decision 2), so that a restore does not bring back what was deleted on purpose.
 * Resolves with how many were removed.
 */
export async function pruneDeleted(source: Catalog, backup: { catalog: Catalog; store: ObjectStore }): Promise<number> {
  const gone: string[] = [];
  let page: string[] = [];
  const ask = async () => {
    const kept = await source.checksumsOf(page.map((key) => INSTANCE_KEY.exec(key)![3]!));
    gone.push(...page.filter((key) => !kept.has(INSTANCE_KEY.exec(key)![3]!)));
    page = [];
  };
  for await (const { objectKey } of backup.catalog.allObjects()) {
    if (!INSTANCE_KEY.test(objectKey)) continue;
    page.push(objectKey);
    if (page.length >= PAGE) await ask();
  }
  await ask();
  for (const key of gone) {
    const [, studyUid, seriesUid, sopUid] = INSTANCE_KEY.exec(key)!;
    const removal = await backup.catalog.remove({ studyUid: studyUid!, seriesUid: seriesUid!, sopUid: sopUid! });
    for (const objectKey of removal.objectKeys) await backup.store.delete(objectKey);
  }
  return gone.length;
}

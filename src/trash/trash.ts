import type { Logger } from 'pino';
import type { Catalog, TrashEntry } from '../catalog/catalog.js';
import { deleteStored } from '../dicomweb/delete.js';
import type { GroupCommit } from '../ingest/group-commit.js';
import type { ObjectStore } from '../storage/object-store.js';
import { RepeatedTurn } from '../stop-signal.js';

/** Often enough that a deletion is gone within a minute of its time, rarely enough to cost the index nothing. */
const MAX_POLL_MS = 60_000;
const BATCH = 20;

type Deps = { catalog: Catalog; store: ObjectStore; durable: GroupCommit; log: Logger };

/**
 * Empties the trash of what has been there PACS_TRASH_DAYS: each entry's objects and their renderings are deleted,
 * then its rows. Objects first: a crash in between leaves rows naming objects already gone, which the next turn
 * deletes again, never objects no row names. Replicas may purge the same entry at once; both end with it gone.
 */
export class TrashPurge {
  private readonly turns: RepeatedTurn;

  constructor(
    deps: Deps,
    private readonly trashMs: number,
  ) {
    this.turns = new RepeatedTurn('trash purge', deps.log, Math.min(MAX_POLL_MS, Math.max(1000, trashMs / 4)), async () => {
      for (const entry of await deps.catalog.dueTrash(Date.now(), BATCH)) {
        if (this.turns.signal.stopped) break;
        await purge(deps, entry);
      }
    });
  }

  start(): void {
    if (this.trashMs > 0) this.turns.start();
  }

  stop(): Promise<void> {
    return this.turns.stop();
  }
}

/** Deletes an entry's objects, its instances' renderings, then the entry; for the purge and for an admin's "purge now". */
export async function purge(deps: Deps, entry: TrashEntry): Promise<void> {
  const { catalog, store, log } = deps;
  const objects = await catalog.trashedObjects(entry.id);
  await deps.durable.exclusive(async () => {
    // An instance sent again since the deletion lives under a key of its own; never delete a key the index names.
    const live = await catalog.objectKeysOf(objects.map((o) => o.sopUid));
    const doomed = objects.filter((o) => live.get(o.sopUid) !== o.objectKey).map((o) => o.objectKey);
    await deleteStored(store, { studyUid: entry.studyUid, seriesUid: entry.seriesUid ?? undefined, sopUid: entry.sopUid ?? undefined }, doomed, log);
    await catalog.forgetTrash(entry.id);
  });
  log.info({ trash: entry.id, studyUid: entry.studyUid, instances: entry.instances }, 'trash entry purged');
}

/** Puts an entry back whole, between upload groups as a deletion is: an upload of the same instances waits for the rows. */
export async function restore(deps: Pick<Deps, 'catalog' | 'durable' | 'log'>, entry: TrashEntry): Promise<{ restored: number; present: number } | undefined> {
  let result: Awaited<ReturnType<Catalog['restoreTrash']>>;
  await deps.durable.exclusive(async () => {
    result = await deps.catalog.restoreTrash(entry.id);
  });
  if (result) deps.log.info({ trash: entry.id, studyUid: entry.studyUid, ...result }, 'restored from the trash');
  return result;
}

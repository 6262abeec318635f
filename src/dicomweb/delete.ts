import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { callerOf } from '../auth/middleware.js';
import type { Removal, Scope } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { BadRequest, NotFound } from '../errors.js';
import { derivedPrefix } from '../storage/keys.js';
import { deleteUnder, type ObjectStore } from '../storage/object-store.js';
import { pathScope } from './path-uids.js';

/** Object deletions in flight at once: enough to overlap the store's latency, few enough to spare its connections. */
const PARALLEL_DELETES = 16;
/** A reason says why in a few words; more is not a reason but a document, and the audit trail keeps fields short. */
const MIN_REASON = 3;
const MAX_REASON = 500;
/** The header a client may give the reason in instead of `?reason=`. */
const REASON_HEADER = 'X-Deletion-Reason';

/** Deletion of stored studies, series and instances, for the clinic administrator. */
export function deleteRouter(services: Services) {
  const { catalog, store } = services;
  const router = new Hono<Env>();

  const remove = async (c: Context<Env>) => {
    const scope = pathScope(c);
    const reason = reasonOf(c);
    const now = Date.now();
    // Into the trash, its objects left where they are, unless the clinic keeps none (PACS_TRASH_DAYS=0).
    const trash = services.config.trashMs > 0 ? { id: randomUUID(), deletedAt: now, purgeAfter: now + services.config.trashMs, reason, credential: callerOf(c) } : undefined;
    let removal: Removal | undefined;
    await services.ingest.durable.exclusive(async () => {
      removal = await catalog.remove(scope, trash);
      // Index first, objects after (DESIGN decision 2): a crash in between leaves objects without rows, which verify lists.
      // Renderings are a cache: they go at once, so a trashed patient's images are not kept twice.
      if (removal.instances > 0) await (trash ? deleteDerived(store, scope, c.var.log) : deleteStored(store, scope, removal.objectKeys, c.var.log));
    });
    const { objectKeys: _keys, ...deleted } = removal!;
    if (deleted.instances === 0) throw new NotFound(`no ${scope.sopUid ? 'instance' : scope.seriesUid ? 'series' : 'study'} with that UID is stored`);
    c.var.log.info({ scope, deleted, reason, trash: trash?.id }, 'deleted');
    return c.json({ deleted, reason, ...(trash && { trash: { id: trash.id, purge_after: new Date(trash.purgeAfter).toISOString() } }) }, 200);
  };
  router.delete('/studies/:study', remove);
  router.delete('/studies/:study/series/:series', remove);
  router.delete('/studies/:study/series/:series/instances/:instance', remove);

  return router;
}

/**
 * Why it is deleted, in the client's words: nothing is deleted without one, and the audit trail keeps it with the
 * request (given as a header, it is added to the request's recorded query).
 */
function reasonOf(c: Context<Env>): string {
  const fromHeader = c.req.header(REASON_HEADER);
  const reason = (c.req.query('reason') ?? fromHeader ?? '').trim();
  if (reason.length < MIN_REASON || reason.length > MAX_REASON) {
    throw new BadRequest(`say why this is deleted, in ${MIN_REASON} to ${MAX_REASON} characters: ?reason=… or the ${REASON_HEADER} header (it is kept in the audit trail)`);
  }
  if (c.req.query('reason') === undefined) c.set('auditReason', reason);
  return reason;
}

/**
 * The objects of instances whose rows are gone, and the renderings made of them (named by the instance's checksum, so
 * a leftover is never served, only kept). A failure leaves an object behind: logged, never the caller's failure.
 */
export async function deleteStored(store: ObjectStore, scope: Scope, keys: string[], log: Logger): Promise<void> {
  await deleteObjects(store, keys, log);
  await deleteDerived(store, scope, log);
}

async function deleteDerived(store: ObjectStore, scope: Scope, log: Logger): Promise<void> {
  await deleteUnder(store, derivedPrefix(scope), (err, key) => log.warn({ err, objectKey: key }, 'derived object left in the store after its instance was deleted'));
}

async function deleteObjects(store: ObjectStore, keys: string[], log: Logger): Promise<void> {
  for (let i = 0; i < keys.length; i += PARALLEL_DELETES) {
    await Promise.all(
      keys.slice(i, i + PARALLEL_DELETES).map((key) =>
        store.delete(key).catch((err: unknown) => log.warn({ err, objectKey: key }, 'object left in the store after its index rows were deleted; verify lists it')),
      ),
    );
  }
}

import { createHash } from 'node:crypto';
import { IngestBatch } from '../ingest/ingest.js';
import { discard, spool } from '../ingest/spool.js';
import { instanceKeyParts, versionedChecksumPrefix } from '../storage/keys.js';
import type { VerifyDeps } from './verify-pass.js';

/**
 * An object without an index row may be an upload between its put and its index commit (DESIGN decision 2): one
 * younger than this is left for a later pass. A write of the largest instance ends its put within seconds of being indexed.
 */
export const ORPHAN_GRACE_MS = 3600_000;
/** Where objects that are not instances of this index go instead of being deleted: an administrator looks at them. */
export const QUARANTINE_PREFIX = 'quarantine/';

export type OrphanOutcome = { action: 'indexed' | 'quarantined' | 'left'; line: string };

/**
 * Settles one object the index does not know: an instance (by its content, through the normal ingest) is indexed;
 * anything else is moved under quarantine/, never deleted. undefined when it went away or got indexed meanwhile.
 */
export async function reconcileOrphan(deps: VerifyDeps, key: string): Promise<OrphanOutcome | undefined> {
  const found = await deps.store.head(key);
  if (!found) return undefined;
  const age = found.modifiedAt === undefined ? 0 : Date.now() - found.modifiedAt;
  if (age < ORPHAN_GRACE_MS) {
    return { action: 'left', line: `UNINDEXED ${key}: written ${Math.round(age / 1000)} s ago and not indexed; an upload may still be finishing, so it is left for a later pass` };
  }
  const parts = instanceKeyParts(key);
  const reason = parts ? await indexAgain(deps, key, parts.sopUid) : 'its name is not that of an instance';
  if (reason === undefined) return { action: 'indexed', line: `UNINDEXED ${key}: a valid instance stored but never indexed (an interrupted upload); indexed now` };
  const target = await quarantine(deps, key, parts?.sopUid);
  return target === undefined ? undefined : { action: 'quarantined', line: `UNINDEXED ${key}: ${reason}; moved to ${target}` };
}

/**
 * Ingests the object as an upload would be, under a version key of its own: undefined when its bytes are now indexed
 * (and this copy of them is removed), else why not. An instance the index holds already is not touched: the object
 * is then a former version whose removal failed, or a stray copy, never something to overwrite the current one with.
 */
async function indexAgain(deps: VerifyDeps, key: string, sopUid: string): Promise<string | undefined> {
  const current = (await deps.catalog.objectKeysOf([sopUid])).get(sopUid);
  if (current !== undefined) return `instance ${sopUid} is indexed with the object ${current}: this one is a former version or a copy`;
  // A versioned key names its bytes' SHA-256: bytes that changed since (a disk's damage) are not an upload to index.
  const named = versionedChecksumPrefix(key);
  if (named !== undefined) {
    const sha256 = await sha256Of(await deps.store.get(key));
    if (!sha256.startsWith(named)) return `its bytes are not those it was stored with (their SHA-256 is ${sha256}, its name says ${named}…): damaged in the store`;
  }
  const batch = new IngestBatch(deps.ingest);
  const receipt = await batch.add(await deps.store.get(key));
  await batch.commit();
  const outcome = await receipt.outcome;
  if (outcome.status === 'failed') return `it is not an instance this server can index (${outcome.reason})`;
  if (outcome.status === 'duplicate' || outcome.sopInstanceUid !== sopUid) {
    return `it holds instance ${outcome.sopInstanceUid}, which is ${outcome.status === 'stored' ? 'now' : 'already'} indexed under its own key: this copy is redundant`;
  }
  // Its bytes, checked by their SHA-256 on the way in, are now the indexed version: a key never written again goes.
  await deps.store.delete(key);
  return undefined;
}

/**
 * Moves an object under quarantine/ (a copy checked by its SHA-256, then the removal). It runs between upload groups
 * and under the instance's lock, and not at all when an upload has indexed that key meanwhile.
 */
async function quarantine(deps: VerifyDeps, key: string, sopUid: string | undefined): Promise<string | undefined> {
  const target = `${QUARANTINE_PREFIX}${new Date().toISOString().slice(0, 10)}/${key}`;
  let moved = false;
  await deps.ingest.durable.exclusive(() =>
    deps.catalog.withInstanceLocks(sopUid ? [sopUid] : [], async () => {
      if (sopUid && (await deps.catalog.objectKeysOf([sopUid])).get(sopUid) === key) return;
      const spooled = await spool(await deps.store.get(key), deps.ingest.spoolDir, Number.MAX_SAFE_INTEGER);
      try {
        await spooled.synced;
        await deps.store.putFiles([{ key: target, localPath: spooled.path, sha256: spooled.sha256 }]);
      } finally {
        await discard(spooled);
      }
      await deps.store.delete(key);
      moved = true;
    }),
  );
  return moved ? target : undefined;
}

async function sha256Of(body: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of body) hash.update(chunk);
  return hash.digest('hex');
}

import type { Logger } from 'pino';
import type { Catalog, IndexedObject } from '../catalog/catalog.js';
import type { IngestDeps } from '../ingest/ingest.js';
import { instanceKeyParts } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { checkObject } from './check-object.js';
import { reconcileOrphan } from './orphans.js';

export type VerifyDeps = { store: ObjectStore; catalog: Catalog; ingest: IngestDeps; log: Logger };

/** How far a pass came and what it found; saved in the index as it goes, so that another replica can resume it. */
export type PassProgress = {
  /** Instances indexed when the pass began: what it is paced by. */
  total: number;
  checked: number;
  missing: number;
  changed: number;
  /** Instances flagged by an earlier finding whose objects are whole again (restored by the administrator). */
  restored: number;
  orphansIndexed: number;
  orphansQuarantined: number;
  /** Unindexed objects too young to judge: perhaps an upload still finishing. */
  orphansLeft: number;
  /** The latest findings, one line each (`MISSING `, `CHANGED `, `UNINDEXED `), at most MAX_PROBLEMS. */
  problems: string[];
};

const MAX_PROBLEMS = 200;
/** Keys of the store compared with the index at once. */
const KEYS_PER_LOOKUP = 500;

export function freshProgress(total: number): PassProgress {
  return { total, checked: 0, missing: 0, changed: 0, restored: 0, orphansIndexed: 0, orphansQuarantined: 0, orphansLeft: 0, problems: [] };
}

export type PassHooks = {
  /** After each indexed object (pacing waits here), and now and then while orphans are sought; false stops the pass. */
  proceed(cursor: string, progress: PassProgress): Promise<boolean>;
};

/**
 * One verify pass, shared by the scheduled pass in the server and `npm run cli -- verify`: every indexed object from
 * after `cursor` is checked (existence, size, SHA-256) and a finding is flagged in the index; then every object of
 * the store the index does not know is indexed or quarantined (reconcileOrphan). Resolves true when it got through.
 */
export async function verifyPass(deps: VerifyDeps, progress: PassProgress, cursor: string, hooks: PassHooks): Promise<boolean> {
  for await (const row of deps.catalog.allObjects(cursor)) {
    await checkIndexed(deps, row, progress);
    progress.checked++;
    if (!(await hooks.proceed(row.sopUid, progress))) return false;
  }
  let keys: string[] = [];
  for await (const key of deps.store.list('studies/')) {
    keys.push(key);
    if (keys.length < KEYS_PER_LOOKUP) continue;
    await settleOrphans(deps, keys, progress);
    keys = [];
    if (!(await hooks.proceed(cursor, progress))) return false;
  }
  await settleOrphans(deps, keys, progress);
  return true;
}

async function checkIndexed(deps: VerifyDeps, row: IndexedObject, progress: PassProgress): Promise<void> {
  const finding = await checkObject(deps.store, row);
  // An instance deleted or replaced while it was read is no finding.
  if (finding && (await deps.catalog.checksumsOf([row.sopUid])).get(row.sopUid) === row.sha256) {
    progress[finding.damage]++;
    note(progress, `${finding.damage === 'missing' ? 'MISSING ' : 'CHANGED '} ${row.objectKey}: ${finding.detail}`);
    deps.log.error({ ...finding }, `verify: stored instance damaged: ${finding.detail}`);
    await deps.catalog.markDamage(row.sopUid, row.sha256, finding.damage);
  } else if (!finding && row.damage) {
    progress.restored++;
    deps.log.info({ sopUid: row.sopUid, objectKey: row.objectKey }, 'verify: an instance found damaged before is whole again');
    await deps.catalog.markDamage(row.sopUid, row.sha256, undefined);
  }
}

async function settleOrphans(deps: VerifyDeps, keys: string[], progress: PassProgress): Promise<void> {
  const parts = keys.map(instanceKeyParts);
  const sopUids = parts.flatMap((p) => (p ? [p.sopUid] : []));
  const indexed = await deps.catalog.objectKeysOf(sopUids);
  // Deleted, not lost: the trash holds their rows until it is restored or purged.
  const trashed = await deps.catalog.trashedKeysOf(sopUids);
  for (const [i, key] of keys.entries()) {
    const sopUid = parts[i]?.sopUid;
    if ((sopUid && indexed.get(sopUid) === key) || trashed.has(key)) continue;
    const outcome = await reconcileOrphan(deps, key);
    if (!outcome) continue;
    progress[outcome.action === 'indexed' ? 'orphansIndexed' : outcome.action === 'quarantined' ? 'orphansQuarantined' : 'orphansLeft']++;
    note(progress, outcome.line);
    deps.log.warn({ objectKey: key, action: outcome.action }, `verify: ${outcome.line}`);
  }
}

function note(progress: PassProgress, line: string): void {
  progress.problems.push(line);
  if (progress.problems.length > MAX_PROBLEMS) progress.problems.shift();
}

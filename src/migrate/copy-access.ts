import { chmod, copyFile, link, mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { SigningKeys } from '../auth/signing-keys.js';
import type { IndexDatabase } from '../catalog/open.js';
import type { Config } from '../config.js';

export type AccessCopy = {
  keys: { seen: number; added: number; revoked: number };
  revocations: { seen: number; changed: number };
  audit: { seen: number; added: number };
  /** Staff accounts and known application entities: those the target lacks are added, its own kept as they are. */
  users: { seen: number; added: number };
  applicationEntities: { seen: number; added: number };
  /** Webhooks with their secrets (receivers check signatures as before); not their deliveries, which the source sent. */
  webhooks: { seen: number; added: number };
};

/** Audit events read and merged per transaction. */
const AUDIT_PAGE = 1000;

/**
 * Carries API keys (their hashes: a key works on the target as it did on the source), viewer-token revocations,
 * the audit trail, staff accounts (with their password hashes: staff sign in on the target as on the source; not
 * their sessions, so they sign in again), the known application entities and the webhooks into the target's index.
 * Merging: run again, it adds only what the target lacks, and a key revoked in the source since is revoked in the
 * target too; an account (same login), application entity (same AE title) or webhook (same id) the target already
 * has is kept as it is there.
 */
export async function copyAccess(source: IndexDatabase, target: IndexDatabase): Promise<AccessCopy> {
  const [from, to] = [source.access(), target.access()];
  const keys = await from.storedKeys();
  const merged = await to.mergeKeys(keys);
  const revocations = await from.revocations();
  const changed = await to.mergeRevocations(revocations);
  const audit = { seen: 0, added: 0 };
  for (let after = 0; ; ) {
    const page = await from.auditAfter(after, AUDIT_PAGE);
    if (page.length === 0) break;
    audit.seen += page.length;
    audit.added += await to.mergeAudit(page.map(({ id: _id, ...event }) => event));
    after = page.at(-1)!.id;
  }
  const users = { seen: 0, added: 0 };
  for (const { login } of await source.users().users()) {
    const stored = await source.users().userByLogin(login);
    if (!stored) continue;
    users.seen++;
    if (await target.users().addUser(stored)) users.added++;
  }
  const entities = await source.applicationEntities();
  let entitiesAdded = 0;
  for (const { createdAt: _createdAt, ...entity } of entities) {
    if (await target.applicationEntity(entity.aeTitle)) continue;
    await target.putApplicationEntity(entity);
    entitiesAdded++;
  }
  const webhooks = await source.webhooks();
  const present = new Set((await target.webhooks()).map((w) => w.id));
  const webhooksToAdd = webhooks.filter((w) => !present.has(w.id));
  for (const webhook of webhooksToAdd) await target.addWebhook(webhook);
  return {
    keys: { seen: keys.length, ...merged },
    revocations: { seen: revocations.tokens.length + revocations.studies.length, changed },
    audit,
    users,
    applicationEntities: { seen: entities.length, added: entitiesAdded },
    webhooks: { seen: webhooks.length, added: webhooksToAdd.length },
  };
}

/**
 * What becomes of the viewer links the source has signed: `shared` when the target verifies them with the same key
 * (configured alike, or the same key file), `copied` when the source's key file was copied into the target's
 * storage folder (it had none), `differs` when the target signs with a key of its own, `none` when the source never
 * signed any. `replace`: a key file of the target's own is replaced by the source's (a backup follows a rotation).
 */
export async function carrySigningKeys(source: Config, target: Config, { replace = false } = {}): Promise<'shared' | 'copied' | 'differs' | 'none'> {
  const configured = (c: Config) => c.viewerToken.signingKey;
  if (configured(target)) {
    const verifies = [configured(target), target.viewerToken.previousSigningKey];
    return configured(source) && verifies.includes(configured(source)) ? 'shared' : 'differs';
  }
  if (configured(source)) return 'differs';
  const from = SigningKeys.fileIn(source.storageDir);
  const to = SigningKeys.fileIn(target.storageDir);
  if (path.resolve(from) === path.resolve(to)) return 'shared';
  const keys = await readFile(from).catch(() => undefined);
  if (!keys) return 'none';
  const theirs = await readFile(to).catch(() => undefined);
  if (theirs && (theirs.equals(keys) || !replace)) return theirs.equals(keys) ? 'shared' : 'differs';
  // As the server makes it: a folder only its user may enter, a file only its user may read.
  await mkdir(path.dirname(to), { recursive: true, mode: 0o700 });
  // Put in place whole, never half a key file; linked unless replacing, so a key file made meanwhile is kept (EEXIST).
  const temp = `${to}.${process.pid}.tmp`;
  await copyFile(from, temp);
  await chmod(temp, 0o600);
  if (replace) await rename(temp, to);
  else await link(temp, to).finally(() => rm(temp, { force: true }));
  return 'copied';
}

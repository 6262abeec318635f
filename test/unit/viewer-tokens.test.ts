import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialLabel, permits, studyScope, type Permission, type Principal } from '../../src/auth/principal.js';
import type { AccessRecords } from '../../src/auth/records.js';
import { SigningKeys } from '../../src/auth/signing-keys.js';
import { ViewerTokens, tokenParties } from '../../src/auth/viewer-tokens.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { newUid } from '../../src/dicom/write.js';
import { Unauthorized } from '../../src/errors.js';

/** Viewer tokens and their signing keys, against a real SQLite index for revocations. */

const LIFETIME = { defaultTtl: 3600, maxTtl: 7200 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowSeconds = () => Math.floor(Date.now() / 1000);

let root: string;
let catalog: SqliteCatalog;
let records: AccessRecords;

beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-tokens-'));
  catalog = SqliteCatalog.open(root);
  records = catalog.access();
});

afterAll(async () => {
  await catalog?.close();
  await fs.rm(root, { recursive: true, force: true });
});

/** A storage folder of its own, as a fresh server would have. */
const storageDir = () => fs.mkdtemp(path.join(root, 'storage-'));

async function keysIn(dir: string): Promise<Array<{ kid: string; retiredAt: number | null }>> {
  return JSON.parse(await fs.readFile(SigningKeys.fileIn(dir), 'utf8')).keys;
}

/** The reason a token is refused for; fails when it is accepted. */
async function refusal(tokens: ViewerTokens, token: string): Promise<string> {
  const error = await tokens.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the token was accepted').toBeInstanceOf(Unauthorized);
  const refused = error as Unauthorized;
  expect(refused.status).toBe(401);
  expect(refused.headers['WWW-Authenticate']).toContain('error="invalid_token"');
  return refused.message;
}

/** A token as ViewerTokens makes them, signed with `key`, but for what `claims` change. */
async function craft(key: { kid: string; secret: Uint8Array }, studyUid: string, claims: Record<string, unknown> = {}): Promise<string> {
  const now = nowSeconds();
  return new SignJWT({ scope: 'study:read', ...tokenParties(key.secret, undefined), sub: studyUid, jti: randomUUID(), iat: now, exp: now + 600, ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'pacs-viewer+jwt', kid: key.kid })
    .sign(key.secret);
}

describe('SigningKeys kept in the storage folder', () => {
  it('makes one key on first start, mode 0600 in a 0700 folder, and finds the same key on the next start', async () => {
    const dir = await storageDir();
    const first = await (await SigningKeys.stored(dir, 1000)).signing();
    const file = SigningKeys.fileIn(dir);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(first.secret.length).toBe(32);
    expect(await keysIn(dir)).toEqual([{ kid: first.kid, secret: expect.any(String), createdAt: expect.any(Number), retiredAt: null }]);
    const again = await (await SigningKeys.stored(dir, 1000)).signing();
    expect(again.kid).toBe(first.kid);
    expect(Buffer.from(again.secret).equals(Buffer.from(first.secret))).toBe(true);
  });

  it('two first starts on one folder agree on one key', async () => {
    const dir = await storageDir();
    const [a, b] = await Promise.all([SigningKeys.stored(dir, 1000), SigningKeys.stored(dir, 1000)]);
    expect((await a.signing()).kid).toBe((await b.signing()).kid);
    expect(await keysIn(dir)).toHaveLength(1);
  });

  it('tightens a key file that others could read back to 0600', async () => {
    const dir = await storageDir();
    await SigningKeys.stored(dir, 1000);
    await fs.chmod(SigningKeys.fileIn(dir), 0o644);
    await SigningKeys.stored(dir, 1000);
    expect((await fs.stat(SigningKeys.fileIn(dir))).mode & 0o777).toBe(0o600);
  });

  it('refuses a key file that holds no key rather than signing with nothing', async () => {
    const dir = await storageDir();
    await SigningKeys.stored(dir, 1000);
    await fs.writeFile(SigningKeys.fileIn(dir), JSON.stringify({ keys: [] }));
    await expect(SigningKeys.stored(dir, 1000)).rejects.toThrow(/holds no signing key/);
  });
});

describe('ViewerTokens', () => {
  let keys: SigningKeys;
  let tokens: ViewerTokens;
  beforeAll(async () => {
    keys = await SigningKeys.stored(await storageDir(), (LIFETIME.maxTtl + 5) * 1000);
    tokens = new ViewerTokens(keys, records, LIFETIME);
  });

  it('issues a study-scoped HS256 JWS that verifies to a viewer-token principal for that study', async () => {
    const study = newUid();
    const before = nowSeconds();
    const issued = await tokens.issue(study);
    expect(decodeProtectedHeader(issued.token)).toEqual({ alg: 'HS256', typ: 'pacs-viewer+jwt', kid: (await keys.signing()).kid });
    const claims = decodeJwt(issued.token);
    expect(claims).toEqual({ scope: 'study:read', iss: expect.stringMatching(/^pacs-lite:[\w-]{22}$/), aud: `${claims.iss}/dicom-web`, sub: study, jti: issued.jti, iat: expect.any(Number), exp: expect.any(Number) });
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(claims.exp! - claims.iat!).toBe(LIFETIME.defaultTtl);
    expect(issued).toMatchObject({ studyUid: study, expiresIn: LIFETIME.defaultTtl, expiresAt: new Date(claims.exp! * 1000) });
    expect(await tokens.verify(issued.token)).toEqual({ kind: 'viewer-token', jti: issued.jti, studyUid: study });
  });

  it('issues for as long as asked', async () => {
    const issued = await tokens.issue(newUid(), 90);
    const claims = decodeJwt(issued.token);
    expect(claims.exp! - claims.iat!).toBe(90);
    expect(issued.expiresIn).toBe(90);
  });

  it('allows 5 s of clock difference on expiry, and no more', async () => {
    const key = await keys.signing();
    const study = newUid();
    const now = nowSeconds();
    expect((await tokens.verify(await craft(key, study, { iat: now - 600, exp: now - 3 }))).studyUid).toBe(study);
    expect(await refusal(tokens, await craft(key, study, { iat: now - 600, exp: now - 7 }))).toMatch(/has expired/);
  });

  it('refuses a token issued more than 5 s in the future', async () => {
    const key = await keys.signing();
    const now = nowSeconds();
    expect((await tokens.verify(await craft(key, newUid(), { iat: now + 3 }))).kind).toBe('viewer-token');
    expect(await refusal(tokens, await craft(key, newUid(), { iat: now + 60 }))).toBe('the token claims to be issued in the future');
  });

  it('refuses a token it did not sign, an altered one, and one over 2048 characters', async () => {
    const study = newUid();
    expect(await refusal(tokens, await craft({ kid: 'elsewhere', secret: randomBytes(32) }, study))).toMatch(/not signed by a key of this server/);
    const [header, payload, signature] = (await tokens.issue(study)).token.split('.');
    const altered = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), exp: nowSeconds() + 10 ** 8 })).toString('base64url');
    expect(await refusal(tokens, `${header}.${altered}.${signature}`)).toMatch(/signature does not verify/);
    expect(await refusal(tokens, await craft(await keys.signing(), study, { padding: 'x'.repeat(2048) }))).toMatch(/characters long/);
  });

  it('refuses a token of its own signature whose life exceeds the configured maximum: issued 30 days ago, or expiring in 10 years', async () => {
    const key = await keys.signing();
    const now = nowSeconds();
    expect(await refusal(tokens, await craft(key, newUid(), { iat: now - 30 * 86_400, exp: now + 600 }))).toMatch(/claims a life of \d+ s, longer than the 7200 s this server grants/);
    expect(await refusal(tokens, await craft(key, newUid(), { iat: now, exp: now + 10 * 365 * 86_400 }))).toMatch(/longer than the 7200 s/);
    // The control: the longest life it grants, and the 5 s of tolerance.
    expect((await tokens.verify(await craft(key, newUid(), { iat: now - 100, exp: now - 100 + LIFETIME.maxTtl + 5 }))).kind).toBe('viewer-token');
  });

  it('refuses a token whose iss and aud are the ones every installation used to share', async () => {
    const token = await craft(await keys.signing(), newUid(), { iss: 'pacs-lite', aud: 'pacs-lite/dicom-web' });
    expect(await refusal(tokens, token)).toMatch(/issued for another installation/);
  });

  it('names its installation in iss and aud: by PACS_PUBLIC_URL when set, else by its key', async () => {
    const shared = SigningKeys.configured(randomBytes(32).toString('base64'), undefined);
    const clinicA = new ViewerTokens(shared, records, LIFETIME, 'https://pacs.clinic-a.example');
    const clinicB = new ViewerTokens(shared, records, LIFETIME, 'https://pacs.clinic-b.example');
    const replicaOfA = new ViewerTokens(SigningKeys.configured(Buffer.from((await shared.signing()).secret).toString('base64'), undefined), records, LIFETIME, 'https://pacs.clinic-a.example');
    const issued = await clinicA.issue(newUid());
    // Two clinics that share a signing key by mistake do not open each other's links; replicas of one do.
    expect(await refusal(clinicB, issued.token)).toMatch(/issued for another installation/);
    expect((await replicaOfA.verify(issued.token)).jti).toBe(issued.jti);
    // Without a public URL the installation is its key: any other key's claims differ even where a signature would not.
    expect(tokenParties((await shared.signing()).secret, undefined)).not.toEqual(tokenParties(randomBytes(32), undefined));
    expect(await refusal(new ViewerTokens(shared, records, LIFETIME), issued.token)).toMatch(/issued for another installation/);
  });

  it('revokes one token by its jti; the study\'s other tokens still verify', async () => {
    const study = newUid();
    const [revoked, kept] = [await tokens.issue(study), await tokens.issue(study)];
    await tokens.revoke(revoked.jti);
    expect(await refusal(tokens, revoked.token)).toBe('the token was revoked');
    expect((await tokens.verify(kept.token)).jti).toBe(kept.jti);
  });

  it('revokes every token of a study issued until now; other studies and later tokens verify', async () => {
    const [study, other] = [newUid(), newUid()];
    const old = await tokens.issue(study);
    const otherToken = await tokens.issue(other);
    await tokens.revokeStudy(study);
    expect(await refusal(tokens, old.token)).toBe('the token was revoked');
    expect((await tokens.verify(otherToken.token)).studyUid).toBe(other);
    // iat is in whole seconds: a token of the revocation's second counts as issued before it.
    await sleep(1000 - (Date.now() % 1000) + 10);
    expect((await tokens.verify((await tokens.issue(study)).token)).studyUid).toBe(study);
  });
});

describe('rotation of stored signing keys', () => {
  it('keeps a token signed before the rotation verifying; tokens issued after carry the new kid', async () => {
    const dir = await storageDir();
    const tokens = new ViewerTokens(await SigningKeys.stored(dir, 60_000), records, LIFETIME);
    const before = await tokens.issue(newUid());
    const { kid, retired } = await SigningKeys.rotate(dir, 60_000);
    expect(retired).toEqual([decodeProtectedHeader(before.token).kid]);
    const after = await tokens.issue(newUid());
    expect(decodeProtectedHeader(after.token).kid).toBe(kid);
    expect((await tokens.verify(before.token)).jti).toBe(before.jti);
    expect((await tokens.verify(after.token)).jti).toBe(after.jti);
    expect((await fs.stat(SigningKeys.fileIn(dir))).mode & 0o777).toBe(0o600);
  });

  it('a retired key stops verifying after its life, also in a process that has not signed since', async () => {
    const dir = await storageDir();
    const life = 300;
    const tokens = new ViewerTokens(await SigningKeys.stored(dir, life), records, LIFETIME);
    const old = await tokens.issue(newUid());
    await SigningKeys.rotate(dir, life);
    expect((await tokens.verify(old.token)).jti).toBe(old.jti);
    // The key file is looked at again at most once a second.
    await sleep(Math.max(life, 1000) + 50);
    expect(await refusal(tokens, old.token)).toMatch(/not signed by a key of this server \(or its key has been retired\)/);
  });

  it('a key dropped from the file stops verifying within a second', async () => {
    const dir = await storageDir();
    const tokens = new ViewerTokens(await SigningKeys.stored(dir, 60_000), records, LIFETIME);
    const old = await tokens.issue(newUid());
    expect((await tokens.verify(old.token)).jti).toBe(old.jti);
    // A life of 0: the rotation keeps no old key, as an operator does when a key has leaked.
    const { retired } = await SigningKeys.rotate(dir, 0);
    expect(retired).toEqual([]);
    expect(await keysIn(dir)).toHaveLength(1);
    await sleep(1050);
    expect(await refusal(tokens, old.token)).toMatch(/not signed by a key of this server/);
  });

  it('drops from the file the keys whose life is over, keeps the others retired', async () => {
    const dir = await storageDir();
    const first = await (await SigningKeys.stored(dir, 1000)).signing();
    const second = await SigningKeys.rotate(dir, 60_000);
    expect((await keysIn(dir)).map((k) => [k.kid, k.retiredAt === null])).toEqual([
      [second.kid, true],
      [first.kid, false],
    ]);
    await sleep(20);
    // The first key retired 20 ms ago goes; the second, retired by this rotation, verifies for 10 ms more.
    const third = await SigningKeys.rotate(dir, 10);
    expect((await keysIn(dir)).map((k) => k.kid)).toEqual([third.kid, second.kid]);
  });
});

describe('SigningKeys configured by the operator', () => {
  const current = randomBytes(32).toString('base64');
  const previous = randomBytes(32).toString('base64');
  const kidOf = (b64: string) => createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64url').slice(0, 16);

  it('signs with the current key and verifies tokens of the previous one', async () => {
    const keys = SigningKeys.configured(current, previous);
    expect((await keys.signing()).kid).toBe(kidOf(current));
    const before = await new ViewerTokens(SigningKeys.configured(previous, undefined), records, LIFETIME).issue(newUid());
    const tokens = new ViewerTokens(keys, records, LIFETIME);
    expect((await tokens.verify(before.token)).jti).toBe(before.jti);
    const now = await tokens.issue(newUid());
    expect(decodeProtectedHeader(now.token).kid).toBe(kidOf(current));
    expect((await tokens.verify(now.token)).jti).toBe(now.jti);
  });

  it('without a previous key, verifies only tokens of the current one', async () => {
    const before = await new ViewerTokens(SigningKeys.configured(previous, undefined), records, LIFETIME).issue(newUid());
    const tokens = new ViewerTokens(SigningKeys.configured(current, undefined), records, LIFETIME);
    expect(await refusal(tokens, before.token)).toMatch(/not signed by a key of this server/);
  });

  it('writes no key file', async () => {
    const dir = await storageDir();
    SigningKeys.configured(current, previous);
    await expect(fs.stat(SigningKeys.fileIn(dir))).rejects.toThrow(/ENOENT/);
  });
});

describe('permits', () => {
  const key = (role: 'viewer-links' | 'upload' | 'read' | 'admin'): Principal => ({ kind: 'key', id: 'k1', name: role, role });
  const PERMISSIONS: Permission[] = ['read', 'summaries', 'viewer-links', 'upload', 'delete', 'admin'];
  // prettier-ignore
  const TABLE: Array<[string, Principal, Permission[]]> = [
    ['a viewer-links key (the EMR)', key('viewer-links'), ['summaries', 'viewer-links']],
    ['an upload key', key('upload'), ['upload']],
    ['a read key', key('read'), ['read', 'summaries']],
    ['an admin key', key('admin'), PERMISSIONS],
    ['a viewer token', { kind: 'viewer-token', jti: 'j', studyUid: '1.2.3' }, ['read']],
    ['an anonymous reader', { kind: 'anonymous' }, ['read', 'summaries']],
  ];

  it.each(TABLE)('%s may %j and nothing else', (_, principal, allowed) => {
    expect(PERMISSIONS.filter((p) => permits(principal, p))).toEqual(allowed);
  });

  it('names a principal without its secret, and limits a viewer token to its study', () => {
    expect(credentialLabel(key('read'))).toBe('key:k1');
    expect(credentialLabel({ kind: 'viewer-token', jti: 'j-1', studyUid: '1.2.3' })).toBe('token:j-1');
    expect(credentialLabel({ kind: 'anonymous' })).toBe('anonymous');
    expect(credentialLabel(undefined)).toBe('none');
    expect(studyScope({ kind: 'viewer-token', jti: 'j', studyUid: '1.2.3' })).toBe('1.2.3');
    expect(studyScope(key('admin'))).toBeUndefined();
    expect(studyScope({ kind: 'anonymous' })).toBeUndefined();
    expect(studyScope(undefined)).toBeUndefined();
  });
});

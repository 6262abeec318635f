import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SignJWT, UnsecuredJWT, base64url, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys } from '../../src/auth/signing-keys.js';
import { tokenParties } from '../../src/auth/viewer-tokens.js';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, type SyntheticOptions } from '../fixtures/synthetic.js';
import { AS_ADMIN, TEST_ADMIN_KEY, adminFetch, startServer, stowBody, type RunningServer } from '../helpers/server.js';
import { indexContents } from '../helpers/stored.js';

/** Access control (DESIGN decision 8): API keys with roles, study-scoped viewer tokens, the audit trail. */

const VIEWER_URL = 'https://viewer.clinic.example';
const MAX_TTL = 7200;
const DICOM_JSON = { Accept: 'application/dicom+json' };
const FRAME_ACCEPT = { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' };
const INSTANCE_ACCEPT = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
/** What a study that is not there, or not the token's, looks like: the same either way. */
const NO_SUCH_STUDY = { error: 'not-found', detail: 'no study with that UID is stored' };
/** These tests send many bad credentials from one address on purpose; the limits on that are abuse.test.ts's. */
const UNLIMITED = { PACS_AUTH_FAILURES_PER_MINUTE: '1000000', PACS_AUDIT_REFUSED_PER_MINUTE: '1000000' };
/** Unknown, revoked and expired keys are refused in the same words. */
const KEY_NOT_VALID = /^the API key is not known to this server, or was revoked or has expired; ask the administrator for a valid one$/;
/** The configured signing keys of the anonymous-read server. */
const CONFIGURED_KEY = randomBytes(32).toString('base64');
const PREVIOUS_KEY = randomBytes(32).toString('base64');

type Auth = Record<string, string>;
type Study = { studyUID: string; seriesUID: string; sops: string[]; accession: string; patientID: string };

const bearer = (credential: string): Auth => ({ Authorization: `Bearer ${credential}` });
const basic = (user: string, password: string): Auth => ({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Every secret sent to a server, to look for in its logs at the end. */
const secretsUsed = new Set<string>([TEST_ADMIN_KEY]);

let server: RunningServer;
/** PACS_ANONYMOUS_READ=true, no PACS_VIEWER_URL, a configured signing key and a previous one. */
let lan: RunningServer;
let A: Study;
let B: Study;
let keys: Record<'viewer-links' | 'upload' | 'read' | 'admin', { id: string; key: string }>;

async function stowAs(target: RunningServer, auth: Auth, files: Buffer[], query = ''): Promise<Response> {
  const { body, contentType } = stowBody(files);
  return fetch(`${target.dicomweb}/studies${query}`, { method: 'POST', headers: { ...auth, 'Content-Type': contentType, Accept: 'application/dicom+json' }, body: new Uint8Array(body) });
}

/** A study of `count` instances in one series, stored as the administrator. */
async function storeStudy(target: RunningServer, o: Partial<SyntheticOptions> & { count?: number } = {}): Promise<Study> {
  const studyUID = newUid();
  const seriesUID = newUid();
  const accession = o.accessionNumber ?? `ACC-${randomBytes(4).toString('hex')}`;
  const patientID = o.patientID ?? `PID-${randomBytes(4).toString('hex')}`;
  const sops = Array.from({ length: o.count ?? 1 }, () => newUid());
  const files = sops.map((sopInstanceUID, i) => syntheticInstance({ ...o, studyUID, seriesUID, sopInstanceUID, accessionNumber: accession, patientID, instanceNumber: i + 1 }));
  const response = await stowAs(target, AS_ADMIN, files);
  expect(response.status, await response.clone().text()).toBe(200);
  return { studyUID, seriesUID, sops, accession, patientID };
}

async function createKey(target: RunningServer, role: string, extra: Record<string, unknown> = {}): Promise<{ id: string; key: string; body: any }> {
  const response = await adminFetch(`${target.url}/api/v1/keys`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: `${role} ${randomUUID()}`, role, ...extra }),
  });
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(201);
  secretsUsed.add(body.key);
  return { id: body.id, key: body.key, body };
}

/** A viewer link as the EMR asks for it (as admin unless told otherwise). */
async function viewerLink(study: string, query = '', auth: Auth = AS_ADMIN): Promise<{ viewer_url: string; study_uid: string; expires_in: number; expires_at: string; token: string; jti: string }> {
  const response = await fetch(`${server.url}/api/v1/studies/${study}/viewer-url${query}`, { headers: auth });
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  const token = new URL(body.viewer_url).searchParams.get('token')!;
  secretsUsed.add(token);
  return { ...body, token, jti: decodeJwt(token).jti! };
}

const metadataUrl = (target: RunningServer, s: Study) => `${target.dicomweb}/studies/${s.studyUID}/metadata`;
const instanceUrl = (target: RunningServer, s: Study, i = 0) => `${target.dicomweb}/studies/${s.studyUID}/series/${s.seriesUID}/instances/${s.sops[i]}`;
const frameUrl = (target: RunningServer, s: Study, i = 0) => `${instanceUrl(target, s, i)}/frames/1`;

/** The key the server signs with now, from the file it wrote. */
async function currentSigningKey(target: RunningServer): Promise<{ kid: string; secret: Uint8Array }> {
  const file = JSON.parse(await fs.readFile(SigningKeys.fileIn(target.dataDir), 'utf8')) as { keys: Array<{ kid: string; secret: string; retiredAt: number | null }> };
  const key = file.keys.find((k) => k.retiredAt === null)!;
  return { kid: key.kid, secret: new Uint8Array(Buffer.from(key.secret, 'base64url')) };
}

type Craft = { header?: Record<string, unknown>; claims?: Record<string, unknown>; omit?: string[]; secret?: Uint8Array; kid?: string };

/** A token as the server would issue it for `studyUID`, signed with its key, but for what `o` changes. */
async function craft(target: RunningServer, studyUID: string, o: Craft = {}): Promise<string> {
  const key = o.secret ? { kid: o.kid ?? 'not-a-kid-of-ours', secret: o.secret } : await currentSigningKey(target);
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { scope: 'study:read', ...tokenParties(key.secret, undefined), sub: studyUID, jti: randomUUID(), iat: now, exp: now + 600, ...o.claims };
  for (const name of o.omit ?? []) delete claims[name];
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'pacs-viewer+jwt', kid: o.kid ?? key.kid, ...o.header } as never).sign(key.secret);
  secretsUsed.add(token);
  return token;
}

/** A 401 whose body and RFC 6750 challenge say why the credential was refused. */
async function expectRefused(response: Response, reason: RegExp): Promise<string> {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(401);
  expect(body.error).toBe('unauthorized');
  expect(body.detail).toMatch(reason);
  expect(response.headers.get('www-authenticate')).toBe(`Bearer realm="pacs-lite", error="invalid_token", error_description="${body.detail.replace(/["\\]/g, "'")}"`);
  return body.detail;
}

/** A 401 for a request that carried no credential: the challenge names no error. */
async function expectChallenge(response: Response): Promise<void> {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(401);
  expect(body).toEqual({ error: 'unauthorized', detail: expect.stringContaining('needs a credential') });
  expect(response.headers.get('www-authenticate')).toBe('Bearer realm="pacs-lite"');
}

async function expectForbidden(response: Response, detail: RegExp): Promise<void> {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(403);
  expect(body.error).toBe('forbidden');
  expect(body.detail).toMatch(detail);
}

async function studiesFound(response: Response): Promise<string[]> {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return (body as any[]).map((r) => r['0020000D'].Value[0]);
}

async function audit(query: string): Promise<any[]> {
  const response = await adminFetch(`${server.url}/api/v1/audit?${query}`);
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body;
}

beforeAll(async () => {
  [server, lan] = await Promise.all([
    startServer({ env: { PACS_VIEWER_URL: `${VIEWER_URL}/`, PACS_VIEWER_TOKEN_MAX_TTL: String(MAX_TTL), ...UNLIMITED } }),
    startServer({ env: { PACS_ANONYMOUS_READ: 'true', PACS_VIEWER_SIGNING_KEY: CONFIGURED_KEY, PACS_VIEWER_SIGNING_KEY_PREVIOUS: PREVIOUS_KEY, ...UNLIMITED } }),
  ]);
  [A, B] = await Promise.all([storeStudy(server, { count: 2, modality: 'CT' }), storeStudy(server, { modality: 'MR' })]);
  const [viewerLinks, upload, read, admin] = await Promise.all((['viewer-links', 'upload', 'read', 'admin'] as const).map((role) => createKey(server, role)));
  keys = { 'viewer-links': viewerLinks!, upload: upload!, read: read!, admin: admin! };
});

afterAll(async () => {
  await Promise.all([server?.stop(), lan?.stop()]);
});

describe('a credential is required', () => {
  const ROUTES: Array<[string, string]> = [
    ['GET', '/dicom-web/studies'],
    ['GET', '/dicom-web/series'],
    ['GET', '/dicom-web/instances'],
    ['GET', '/dicom-web/studies/1.2.3/metadata'],
    ['GET', '/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/1'],
    ['POST', '/dicom-web/studies'],
    ['DELETE', '/dicom-web/studies/1.2.3'],
    ['GET', '/dicom-web/no-such-route'],
    ['GET', '/dicom-web'],
    ['GET', '/api/v1/studies/1.2.3'],
    ['GET', '/api/v1/studies?accession=X'],
    ['GET', '/api/v1/studies/1.2.3/viewer-url'],
    ['GET', '/api/v1/viewer-url?accession=X'],
    ['GET', '/api/v1/keys'],
    ['POST', '/api/v1/keys'],
    ['DELETE', '/api/v1/keys/abc'],
    ['DELETE', '/api/v1/viewer-tokens/00000000-0000-0000-0000-000000000000'],
    ['DELETE', '/api/v1/studies/1.2.3/viewer-tokens'],
    ['GET', '/api/v1/audit'],
  ];

  it.each(ROUTES)('%s %s without a credential is 401 with a Bearer challenge', async (method, route) => {
    await expectChallenge(await fetch(`${server.url}${route}`, { method }));
  });

  it('/healthz needs nothing', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('refuses an API key the server does not know', async () => {
    await expectRefused(await fetch(`${server.dicomweb}/studies`, { headers: bearer(`pacs_${randomBytes(24).toString('base64url')}`) }), KEY_NOT_VALID);
  });

  it('refuses an Authorization header that is neither Bearer nor Basic, or is empty', async () => {
    await expectRefused(await fetch(`${server.dicomweb}/studies`, { headers: { Authorization: `Digest ${TEST_ADMIN_KEY}` } }), /must be "Bearer <key or token>" or "Basic"/);
    await expectRefused(await fetch(`${server.dicomweb}/studies`, { headers: { Authorization: 'Bearer ' } }), /must be "Bearer <key or token>" or "Basic"/);
  });
});

describe('roles: what each credential may do', () => {
  type Who = 'viewer-links key' | 'upload key' | 'read key' | 'admin key' | 'viewer token' | 'no credential';
  let throwaway: Study;
  const authOf = async (who: Who): Promise<Auth> => {
    if (who === 'no credential') return {};
    if (who === 'viewer token') return bearer((await viewerLink(throwaway.studyUID)).token);
    return bearer(keys[who.replace(' key', '') as keyof typeof keys].key);
  };

  const OPERATIONS: Record<string, (auth: Auth) => Promise<Response>> = {
    QIDO: (auth) => fetch(`${server.dicomweb}/studies?StudyInstanceUID=${throwaway.studyUID}`, { headers: { ...auth, ...DICOM_JSON } }),
    'WADO metadata': (auth) => fetch(metadataUrl(server, throwaway), { headers: { ...auth, ...DICOM_JSON } }),
    'WADO frame': (auth) => fetch(frameUrl(server, throwaway), { headers: { ...auth, ...FRAME_ACCEPT } }),
    STOW: (auth) => stowAs(server, auth, [syntheticInstance({ studyUID: throwaway.studyUID, seriesUID: throwaway.seriesUID })]),
    DELETE: async (auth) => {
      // Something to delete, so that a refusal cannot be mistaken for "not found".
      const sopInstanceUID = newUid();
      expect((await stowAs(server, AS_ADMIN, [syntheticInstance({ studyUID: throwaway.studyUID, seriesUID: throwaway.seriesUID, sopInstanceUID })])).status).toBe(200);
      return fetch(`${server.dicomweb}/studies/${throwaway.studyUID}/series/${throwaway.seriesUID}/instances/${sopInstanceUID}?reason=test+deletion`, { method: 'DELETE', headers: auth });
    },
    'viewer-url': (auth) => fetch(`${server.url}/api/v1/studies/${throwaway.studyUID}/viewer-url`, { headers: auth }),
    summaries: (auth) => fetch(`${server.url}/api/v1/studies/${throwaway.studyUID}`, { headers: auth }),
    keys: (auth) => fetch(`${server.url}/api/v1/keys`, { headers: auth }),
    audit: (auth) => fetch(`${server.url}/api/v1/audit?limit=1`, { headers: auth }),
  };
  const COLUMNS = Object.keys(OPERATIONS);

  // prettier-ignore
  const MATRIX: Record<Who, number[]> = {
    //                  QIDO meta frame STOW DELETE link summary keys audit
    'viewer-links key': [403, 403, 403, 403, 403, 200, 200, 403, 403],
    'upload key':       [403, 403, 403, 200, 403, 403, 403, 403, 403],
    'read key':         [200, 200, 200, 403, 403, 403, 200, 403, 403],
    'admin key':        [200, 200, 200, 200, 200, 200, 200, 200, 200],
    'viewer token':     [200, 200, 200, 403, 403, 403, 403, 403, 403],
    'no credential':    [401, 401, 401, 401, 401, 401, 401, 401, 401],
  };
  const CASES = Object.entries(MATRIX).flatMap(([who, statuses]) => statuses.map((status, i) => ({ who: who as Who, operation: COLUMNS[i]!, status })));

  beforeAll(async () => {
    throwaway = await storeStudy(server, { count: 1 });
  });

  it.each(CASES)('$who: $operation → $status', async ({ who, operation, status }) => {
    const response = await OPERATIONS[operation]!(await authOf(who));
    if (status === 401) return expectChallenge(response);
    if (status === 403) {
      const role = who.replace(' key', '');
      return expectForbidden(response, who === 'viewer token' ? /^a viewer token is read-only and may not / : new RegExp(`has the role "${role}", which may not `));
    }
    expect(response.status, await response.text()).toBe(status);
  });
});

describe('API keys', () => {
  it('are shown once at creation, with a hint, and listed without their secret', async () => {
    const { id, key, body } = await createKey(server, 'read', { name: 'Ward 3 workstation' });
    expect(body).toMatchObject({ id, name: 'Ward 3 workstation', role: 'read', expires_at: null, revoked_at: null });
    expect(key).toMatch(/^pacs_[A-Za-z0-9_-]{32}$/);
    expect(body.hint).toBe(`${key.slice(0, 9)}…`);
    const response = await adminFetch(`${server.url}/api/v1/keys`);
    const text = await response.text();
    expect(response.status).toBe(200);
    expect(text).not.toContain(key);
    const listed = (JSON.parse(text) as any[]).find((k) => k.id === id);
    expect(listed).toEqual({ id, name: 'Ward 3 workstation', role: 'read', hint: body.hint, created_at: body.created_at, expires_at: null, revoked_at: null });
    expect((JSON.parse(text) as any[]).some((k) => k.name === 'PACS_ADMIN_KEY' && k.role === 'admin')).toBe(true);
  });

  it('creation is answered with Cache-Control: no-store', async () => {
    const response = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'n', role: 'read' }) });
    expect(response.status).toBe(201);
    secretsUsed.add((await response.json()).key);
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('are kept as a SHA-256 hash, never as themselves', async () => {
    const { key } = await createKey(server, 'upload');
    const stored = await indexContents(server);
    expect(stored.includes(key)).toBe(false);
    expect(stored.includes(createHash('sha256').update(key).digest('hex'))).toBe(true);
  });

  it.each([
    [{ name: 'x', role: 'root' }, /role/],
    [{ role: 'read' }, /name/],
    [{ name: 'x', role: 'read', expires_in_days: -1 }, /expires_in_days/],
    // A misspelt field is refused by name, not ignored into a key that never expires.
    [{ name: 'x', role: 'read', expires: '90d' }, /"expires"/],
    ['not json', /send JSON/],
  ])('refuses to create a key from %j', async (body, detail) => {
    const response = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const json = await response.json();
    expect(response.status).toBe(400);
    expect(json.error).toBe('bad-request');
    expect(json.detail).toMatch(detail);
  });

  it('a revoked key is 401 from then on, in the words of an unknown key, and the list says when it was revoked', async () => {
    const { id, key } = await createKey(server, 'read');
    expect((await fetch(`${server.dicomweb}/studies`, { headers: bearer(key) })).status).toBe(200);
    const revoked = await adminFetch(`${server.url}/api/v1/keys/${id}`, { method: 'DELETE' });
    expect(revoked.status).toBe(204);
    await expectRefused(await fetch(`${server.dicomweb}/studies`, { headers: bearer(key) }), KEY_NOT_VALID);
    const listed = ((await (await adminFetch(`${server.url}/api/v1/keys`)).json()) as any[]).find((k) => k.id === id);
    expect(Date.parse(listed.revoked_at)).toBeLessThanOrEqual(Date.now());
  });

  it('revoking a key that does not exist is 404', async () => {
    const response = await adminFetch(`${server.url}/api/v1/keys/no-such-key`, { method: 'DELETE' });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'not-found', detail: 'no API key has that id' });
  });

  it('a key given an expiry works until then and is 401 afterwards, in the words of an unknown key', async () => {
    // 0.00001 days is 864 ms.
    const { key, body } = await createKey(server, 'read', { expires_in_days: 0.00001 });
    const expiresAt = Date.parse(body.expires_at);
    // The expiry is reckoned a moment before the key is stored.
    expect(expiresAt - Date.parse(body.created_at)).toBeGreaterThan(850);
    expect(expiresAt - Date.parse(body.created_at)).toBeLessThanOrEqual(864);
    expect((await fetch(`${server.dicomweb}/studies`, { headers: bearer(key) })).status).toBe(200);
    await sleep(expiresAt - Date.now() + 20);
    await expectRefused(await fetch(`${server.dicomweb}/studies`, { headers: bearer(key) }), KEY_NOT_VALID);
  });

  it('PACS_ADMIN_KEY seeds an admin key once: revoked, it stays revoked after a restart', async () => {
    const own = await startServer();
    try {
      const seeded = ((await (await adminFetch(`${own.url}/api/v1/keys`)).json()) as any[]).find((k) => k.name === 'PACS_ADMIN_KEY');
      expect(seeded).toMatchObject({ role: 'admin', revoked_at: null });
      expect((await adminFetch(`${own.url}/api/v1/keys/${seeded.id}`, { method: 'DELETE' })).status).toBe(204);
      await own.stop();
      const restarted = await startServer({ dataDir: own.dataDir });
      try {
        await expectRefused(await adminFetch(`${restarted.url}/api/v1/keys`), KEY_NOT_VALID);
      } finally {
        await restarted.stop();
      }
    } finally {
      await own.stop();
    }
  });

  it('a PACS_ADMIN_KEY with a dot, which would be taken for a viewer token, is refused at start', async () => {
    const started = await startServer({ env: { PACS_ADMIN_KEY: 'clinic.admin.key.0123456789abcdef' } }).catch((e: Error) => e);
    if (!(started instanceof Error)) await started.stop();
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toMatch(/PACS_ADMIN_KEY=\(hidden\): without a dot/);
    expect((started as Error).message).not.toContain('clinic.admin.key');
  });

  it('HTTP Basic with the key as the password works, whatever the user name', async () => {
    const { key } = await createKey(server, 'read');
    expect((await fetch(metadataUrl(server, A), { headers: basic('anyone', key) })).status).toBe(200);
    expect((await fetch(metadataUrl(server, A), { headers: basic('', key) })).status).toBe(200);
    await expectRefused(await fetch(metadataUrl(server, A), { headers: basic('anyone', `${key}x`) }), /not known/);
  });

  it('a GET takes a read key as ?token=', async () => {
    expect((await fetch(`${metadataUrl(server, A)}?token=${keys.read.key}`)).status).toBe(200);
    expect((await fetch(`${server.url}/api/v1/studies/${A.studyUID}?token=${keys.read.key}`)).status).toBe(200);
    await expectRefused(await fetch(`${metadataUrl(server, A)}?token=`), /token parameter is empty/);
    await expectRefused(await fetch(`${metadataUrl(server, A)}?token=pacs_nonsense`), /not known/);
  });

  it('a POST or DELETE does not take ?token=: it is a request without a credential', async () => {
    await expectChallenge(await stowAs(server, {}, [syntheticInstance({ studyUID: A.studyUID })], `?token=${TEST_ADMIN_KEY}`));
    await expectChallenge(await fetch(`${server.dicomweb}/studies/${B.studyUID}?token=${TEST_ADMIN_KEY}`, { method: 'DELETE' }));
    await expectChallenge(await fetch(`${server.url}/api/v1/keys?token=${TEST_ADMIN_KEY}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"x","role":"admin"}' }));
    expect((await adminFetch(metadataUrl(server, B))).status).toBe(200);
  });
});

describe('viewer links', () => {
  it('answer the link, the study, and how long the link lives; the link opens the study in the viewer', async () => {
    const before = Math.floor(Date.now() / 1000);
    const response = await fetch(`${server.url}/api/v1/studies/${A.studyUID}/viewer-url`, { headers: bearer(keys['viewer-links'].key) });
    const body = await response.json();
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const token = new URL(body.viewer_url).searchParams.get('token')!;
    secretsUsed.add(token);
    expect(body).toEqual({ viewer_url: `${VIEWER_URL}/viewer?StudyInstanceUIDs=${A.studyUID}&token=${token}`, study_uid: A.studyUID, jti: expect.stringMatching(/^[0-9a-f-]{36}$/), priors: false, expires_in: 3600, expires_at: expect.any(String) });
    const expiresAt = Date.parse(body.expires_at) / 1000;
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3600);
    expect(expiresAt).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 3600);
    expect((await fetch(metadataUrl(server, A), { headers: bearer(token) })).status).toBe(200);
  });

  it('carry a study-scoped, read-only HS256 JWS with typ, kid, iss, aud, jti, iat and exp, signed with the key on disk', async () => {
    const { token, expires_at } = await viewerLink(A.studyUID);
    const key = await currentSigningKey(server);
    const { iss, aud } = tokenParties(key.secret, undefined);
    const { payload, protectedHeader } = await jwtVerify(token, key.secret, { algorithms: ['HS256'], typ: 'pacs-viewer+jwt', issuer: iss, audience: aud });
    expect(protectedHeader).toEqual({ alg: 'HS256', typ: 'pacs-viewer+jwt', kid: key.kid });
    expect(payload).toEqual({ scope: 'study:read', iss, aud, sub: A.studyUID, jti: expect.stringMatching(/^[0-9a-f-]{36}$/), iat: expect.any(Number), exp: Date.parse(expires_at) / 1000 });
    expect(payload.exp! - payload.iat!).toBe(3600);
  });

  it('live as long as expires_in asks, within PACS_VIEWER_TOKEN_MAX_TTL', async () => {
    const short = await viewerLink(A.studyUID, '?expires_in=60');
    expect(short.expires_in).toBe(60);
    const claims = decodeJwt(short.token);
    expect(claims.exp! - claims.iat!).toBe(60);
    expect((await viewerLink(A.studyUID, `?expires_in=${MAX_TTL}`)).expires_in).toBe(MAX_TTL);
  });

  it.each([
    [`${MAX_TTL + 1}`, /at most 7200 seconds \(PACS_VIEWER_TOKEN_MAX_TTL\)/],
    ['0', /number of seconds/],
    ['1.5', /number of seconds/],
    ['soon', /number of seconds/],
  ])('refuse expires_in=%s with 400', async (value, detail) => {
    const response = await adminFetch(`${server.url}/api/v1/studies/${A.studyUID}/viewer-url?expires_in=${value}`);
    const body = await response.json();
    expect(response.status).toBe(400);
    expect(body.error).toBe('bad-request');
    expect(body.detail).toMatch(detail);
  });

  it('are found by accession number', async () => {
    const response = await fetch(`${server.url}/api/v1/viewer-url?accession=${A.accession}`, { headers: bearer(keys['viewer-links'].key) });
    const body = await response.json();
    expect(response.status).toBe(200);
    expect(body.study_uid).toBe(A.studyUID);
    secretsUsed.add(new URL(body.viewer_url).searchParams.get('token')!);
    expect(body.viewer_url).toMatch(new RegExp(`^${VIEWER_URL}/viewer\\?StudyInstanceUIDs=${A.studyUID.replace(/\./g, '\\.')}&token=`));
  });

  it('are 404 for a study or an accession number that is not stored', async () => {
    const unknown = await adminFetch(`${server.url}/api/v1/studies/${newUid()}/viewer-url`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual(NO_SUCH_STUDY);
    const noAccession = await adminFetch(`${server.url}/api/v1/viewer-url?accession=NOPE-1`);
    expect(noAccession.status).toBe(404);
    expect(await noAccession.json()).toEqual({ error: 'not-found', detail: 'no study with accession number NOPE-1 is stored' });
  });

  it('are 409 when the accession number names two studies', async () => {
    const accession = `DUP-${randomBytes(3).toString('hex')}`;
    await Promise.all([storeStudy(server, { accessionNumber: accession }), storeStudy(server, { accessionNumber: accession })]);
    const response = await adminFetch(`${server.url}/api/v1/viewer-url?accession=${accession}`);
    const body = await response.json();
    expect(response.status).toBe(409);
    expect(body.error).toBe('ambiguous-accession');
    expect(body.detail).toContain('/api/v1/studies/{StudyInstanceUID}/viewer-url');
  });

  it('need an exact accession number', async () => {
    expect((await adminFetch(`${server.url}/api/v1/viewer-url`)).status).toBe(400);
    const wildcard = await adminFetch(`${server.url}/api/v1/viewer-url?accession=ACC*`);
    expect(wildcard.status).toBe(400);
    expect((await wildcard.json()).detail).toMatch(/exact value/);
  });

  it('open the OHIF this server serves when PACS_VIEWER_URL is not set', async () => {
    const study = await storeStudy(lan);
    const response = await adminFetch(`${lan.url}/api/v1/studies/${study.studyUID}/viewer-url`);
    expect(response.status).toBe(200);
    const link = new URL(((await response.json()) as { viewer_url: string }).viewer_url);
    expect(`${link.origin}${link.pathname}`).toBe(`${lan.url}/viewer`);
  });
});

describe('a viewer token sees its own study and nothing else', () => {
  let token: string;
  beforeAll(async () => {
    ({ token } = await viewerLink(A.studyUID));
  });
  const asToken = (extra: Auth = {}) => ({ ...bearer(token), ...extra });

  it('QIDO at /studies answers its study only, whatever the query asks for', async () => {
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies`, { headers: asToken(DICOM_JSON) }))).toEqual([A.studyUID]);
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies?StudyInstanceUID=${B.studyUID}`, { headers: asToken(DICOM_JSON) }))).toEqual([]);
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies?StudyInstanceUID=${B.studyUID},${A.studyUID}`, { headers: asToken(DICOM_JSON) }))).toEqual([A.studyUID]);
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies?PatientID=${B.patientID}`, { headers: asToken(DICOM_JSON) }))).toEqual([]);
  });

  it('QIDO at /series and /instances answers its study only', async () => {
    // The control: the administrator sees both studies there.
    const all = await studiesFound(await adminFetch(`${server.dicomweb}/series`, { headers: DICOM_JSON }));
    expect(all).toEqual(expect.arrayContaining([A.studyUID, B.studyUID]));
    expect(new Set(await studiesFound(await fetch(`${server.dicomweb}/series`, { headers: asToken(DICOM_JSON) })))).toEqual(new Set([A.studyUID]));
    const instances = await studiesFound(await fetch(`${server.dicomweb}/instances`, { headers: asToken(DICOM_JSON) }));
    expect(instances).toEqual([A.studyUID, A.studyUID]);
    expect(await studiesFound(await fetch(`${server.dicomweb}/instances?StudyInstanceUID=${B.studyUID}`, { headers: asToken(DICOM_JSON) }))).toEqual([]);
    expect(await studiesFound(await fetch(`${server.dicomweb}/series?StudyInstanceUID=${B.studyUID}`, { headers: asToken(DICOM_JSON) }))).toEqual([]);
  });

  it('WADO serves its study: metadata, instances and frames', async () => {
    expect((await fetch(metadataUrl(server, A), { headers: asToken(DICOM_JSON) })).status).toBe(200);
    expect((await fetch(instanceUrl(server, A, 1), { headers: asToken(INSTANCE_ACCEPT) })).status).toBe(200);
    expect((await fetch(frameUrl(server, A), { headers: asToken(FRAME_ACCEPT) })).status).toBe(200);
  });

  it('another study is 404 with the very body of a study that does not exist', async () => {
    const nonexistent: Study = { ...B, studyUID: newUid() };
    const absent = await adminFetch(metadataUrl(server, nonexistent), { headers: DICOM_JSON });
    expect(absent.status).toBe(404);
    const absentBody = await absent.json();
    expect(absentBody).toEqual(NO_SUCH_STUDY);
    for (const study of [B, nonexistent]) {
      for (const [url, accept] of [
        [metadataUrl(server, study), DICOM_JSON],
        [instanceUrl(server, study), INSTANCE_ACCEPT],
        [frameUrl(server, study), FRAME_ACCEPT],
        [`${server.dicomweb}/studies/${study.studyUID}/series`, DICOM_JSON],
        [`${server.dicomweb}/studies/${study.studyUID}/series/${study.seriesUID}/instances`, DICOM_JSON],
      ] as const) {
        const response = await fetch(url, { headers: asToken(accept) });
        expect(response.status, url).toBe(404);
        expect(await response.json(), url).toEqual(absentBody);
      }
    }
  });

  it('no spelling of another study\'s path gets round the scope', async () => {
    const other = B.studyUID;
    for (const route of [
      `/dicom-web//studies/${other}/metadata`,
      `/dicom-web/%73tudies/${other}/metadata`,
      `/dicom-web/studies/%3${other.slice(0, 1)}${other.slice(1)}/metadata`,
      `/dicom-web/studies/${other}/`,
      `/dicom-web/studies/${other}/series/${B.seriesUID}/metadata`,
      // Another study's series and instances under the token's own study.
      `/dicom-web/studies/${A.studyUID}/series/${B.seriesUID}/metadata`,
      `/dicom-web/studies/${A.studyUID}/series/${B.seriesUID}/instances/${B.sops[0]}/frames/1`,
    ]) {
      const response = await fetch(`${server.url}${route}`, { headers: asToken(route.endsWith('frames/1') ? FRAME_ACCEPT : DICOM_JSON) });
      expect(response.status, route).toBe(404);
      expect(await response.text(), route).not.toContain(B.patientID);
    }
    // A search there finds nothing, as it would for a series that does not exist.
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies/${A.studyUID}/series/${B.seriesUID}/instances`, { headers: asToken(DICOM_JSON) }))).toEqual([]);
  });

  it('is 403 for STOW and DELETE, even of its own study, and the study stays', async () => {
    await expectForbidden(await stowAs(server, asToken(), [syntheticInstance({ studyUID: A.studyUID, seriesUID: A.seriesUID })]), /may not store instances/);
    await expectForbidden(await stowAs(server, asToken(), [syntheticInstance({ studyUID: A.studyUID })], `/${A.studyUID}`), /may not store instances/);
    await expectForbidden(await fetch(`${server.dicomweb}/studies/${A.studyUID}`, { method: 'DELETE', headers: asToken() }), /may not delete/);
    await expectForbidden(await fetch(instanceUrl(server, A), { method: 'DELETE', headers: asToken() }), /may not delete/);
    expect(await studiesFound(await adminFetch(`${server.dicomweb}/studies/${A.studyUID}/instances`, { headers: DICOM_JSON }))).toHaveLength(2);
  });

  it('is 403 on the /api/v1 routes: keys, audit, revocation, summaries, links', async () => {
    await expectForbidden(await fetch(`${server.url}/api/v1/keys`, { headers: asToken() }), /manage keys/);
    await expectForbidden(await fetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: asToken({ 'Content-Type': 'application/json' }), body: '{"name":"x","role":"admin"}' }), /manage keys/);
    await expectForbidden(await fetch(`${server.url}/api/v1/audit`, { headers: asToken() }), /manage keys/);
    await expectForbidden(await fetch(`${server.url}/api/v1/viewer-tokens/${decodeJwt(token).jti}`, { method: 'DELETE', headers: asToken() }), /manage keys/);
    await expectForbidden(await fetch(`${server.url}/api/v1/studies/${A.studyUID}/viewer-tokens`, { method: 'DELETE', headers: asToken() }), /manage keys/);
    await expectForbidden(await fetch(`${server.url}/api/v1/studies/${A.studyUID}/viewer-url`, { headers: asToken() }), /may not ask for viewer links/);
    await expectForbidden(await fetch(`${server.url}/api/v1/studies/${A.studyUID}`, { headers: asToken() }), /may not read study summaries/);
  });

  it('works as ?token= on GET, as OHIF opens the link, and stays scoped there', async () => {
    expect((await fetch(`${metadataUrl(server, A)}?token=${token}`, { headers: DICOM_JSON })).status).toBe(200);
    expect(await studiesFound(await fetch(`${server.dicomweb}/studies?token=${token}`, { headers: DICOM_JSON }))).toEqual([A.studyUID]);
    const other = await fetch(`${metadataUrl(server, B)}?token=${token}`, { headers: DICOM_JSON });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual(NO_SUCH_STUDY);
  });

  it('is not taken as ?token= on a POST', async () => {
    await expectChallenge(await stowAs(server, {}, [syntheticInstance({ studyUID: A.studyUID })], `?token=${token}`));
  });
});

describe('a viewer token that is not good is 401 with a specific reason', () => {
  it('the control: a token crafted here as the server makes them opens its study', async () => {
    expect((await fetch(metadataUrl(server, A), { headers: bearer(await craft(server, A.studyUID)) })).status).toBe(200);
  });

  it('accepts a token expired by less than the 5 s clock tolerance', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await craft(server, A.studyUID, { claims: { iat: now - 3600, exp: now - 2 } });
    expect((await fetch(metadataUrl(server, A), { headers: bearer(token) })).status).toBe(200);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const CASES: Array<[string, () => Promise<string>, RegExp]> = [
    ['expired (beyond the tolerance)', () => craft(server, A.studyUID, { claims: { iat: now() - 3600, exp: now() - 10 } }), /^the token has expired; ask the EMR for a new link$/],
    [
      'tampered: its payload changed to another study',
      async () => {
        const [header, payload, signature] = (await craft(server, A.studyUID)).split('.');
        const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload!)));
        return `${header}.${base64url.encode(JSON.stringify({ ...claims, sub: B.studyUID }))}.${signature}`;
      },
      /^the token signature does not verify: it was altered or signed elsewhere$/,
    ],
    ['signed with another key under our kid', async () => craft(server, A.studyUID, { secret: randomBytes(32), kid: (await currentSigningKey(server)).kid }), /^the token signature does not verify/],
    ['signed with a key this server does not have', () => craft(server, A.studyUID, { secret: randomBytes(32) }), /^the token was not signed by a key of this server/],
    ['without a kid', () => craft(server, A.studyUID, { header: { kid: undefined } }), /^the token was not signed by a key of this server/],
    ['alg none', async () => new UnsecuredJWT({ scope: 'study:read', sub: A.studyUID, jti: randomUUID() }).setIssuer('pacs-lite').setAudience('pacs-lite/dicom-web').setIssuedAt().setExpirationTime('10m').encode(), /^tokens signed with that algorithm are not accepted; only HS256$/],
    [
      'alg HS512, with our key',
      async () => {
        const key = await currentSigningKey(server);
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ scope: 'study:read', sub: A.studyUID, jti: randomUUID(), iss: 'pacs-lite', aud: 'pacs-lite/dicom-web', iat: now, exp: now + 600 })
          .setProtectedHeader({ alg: 'HS512', typ: 'pacs-viewer+jwt', kid: key.kid })
          .sign(key.secret);
      },
      /^tokens signed with that algorithm are not accepted; only HS256$/,
    ],
    [
      'alg RS256, with a key pair of its own',
      async () => {
        const { privateKey } = await generateKeyPair('RS256');
        const key = await currentSigningKey(server);
        return new SignJWT({ scope: 'study:read', sub: A.studyUID, jti: randomUUID() })
          .setProtectedHeader({ alg: 'RS256', typ: 'pacs-viewer+jwt', kid: key.kid })
          .setIssuer('pacs-lite')
          .setAudience('pacs-lite/dicom-web')
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(privateKey);
      },
      /^tokens signed with that algorithm are not accepted; only HS256$/,
    ],
    ['for another audience', () => craft(server, A.studyUID, { claims: { aud: 'someone-else' } }), /^the token was issued for another installation: its iss and aud claims do not name this server$/],
    ['from another issuer', () => craft(server, A.studyUID, { claims: { iss: 'https://idp.example' } }), /^the token was issued for another installation/],
    ['with the iss and aud every installation once shared', () => craft(server, A.studyUID, { claims: { iss: 'pacs-lite', aud: 'pacs-lite/dicom-web' } }), /^the token was issued for another installation/],
    ['of another typ', () => craft(server, A.studyUID, { header: { typ: 'JWT' } }), /^the token's typ claim is not valid here \(wrong value\)$/],
    ['without a typ', () => craft(server, A.studyUID, { header: { typ: undefined } }), /^the token's typ claim is not valid here \(wrong value\)$/],
    ['without a jti', () => craft(server, A.studyUID, { omit: ['jti'] }), /^the token's jti claim is not valid here \(missing\)$/],
    ['without an exp', () => craft(server, A.studyUID, { omit: ['exp'] }), /^the token's exp claim is not valid here \(missing\)$/],
    ['issued in the future', () => craft(server, A.studyUID, { claims: { iat: now() + 60, exp: now() + 600 } }), /^the token claims to be issued in the future$/],
    ['granting something other than reading a study', () => craft(server, A.studyUID, { claims: { scope: 'study:write' } }), /^the token does not grant read access to a study$/],
    ['naming no study', () => craft(server, A.studyUID, { claims: { sub: '../1.2.3' } }), /^the token does not grant read access to a study$/],
    ['not base64', async () => '!!!.###.$$$', /^the token is not a well-formed viewer token$/],
    ['of two parts', async () => (await craft(server, A.studyUID)).split('.').slice(0, 2).join('.'), /^the token is not a well-formed viewer token$/],
    ['longer than 2048 characters, though signed by us', () => craft(server, A.studyUID, { claims: { padding: 'x'.repeat(2100) } }), /^the token is \d+ characters long, more than any token this server issues$/],
  ];

  it.each(CASES)('refuses a token %s', async (_, make, reason) => {
    const token = await make();
    secretsUsed.add(token);
    await expectRefused(await fetch(metadataUrl(server, A), { headers: bearer(token) }), reason);
    // In the URL the same.
    await expectRefused(await fetch(`${metadataUrl(server, A)}?token=${encodeURIComponent(token)}`), reason);
  });
});

describe('revoking viewer tokens (admin only)', () => {
  it('one token by its jti: that token is 401 "revoked", others of the study still work', async () => {
    const study = await storeStudy(server);
    const [revoked, kept] = [await viewerLink(study.studyUID), await viewerLink(study.studyUID)];
    expect((await fetch(metadataUrl(server, study), { headers: bearer(revoked.token) })).status).toBe(200);
    const response = await adminFetch(`${server.url}/api/v1/viewer-tokens/${revoked.jti}`, { method: 'DELETE' });
    expect(response.status).toBe(204);
    await expectRefused(await fetch(metadataUrl(server, study), { headers: bearer(revoked.token) }), /^the token was revoked$/);
    expect((await fetch(metadataUrl(server, study), { headers: bearer(kept.token) })).status).toBe(200);
  });

  it('a jti that is not a UUID is 400', async () => {
    const response = await adminFetch(`${server.url}/api/v1/viewer-tokens/not-a-uuid`, { method: 'DELETE' });
    expect(response.status).toBe(400);
  });

  it('every token of a study at once: they are 401, other studies\' tokens work, and a link issued afterwards works', async () => {
    const [study, other] = await Promise.all([storeStudy(server), storeStudy(server)]);
    const old = [await viewerLink(study.studyUID), await viewerLink(study.studyUID, '?expires_in=60')];
    const otherLink = await viewerLink(other.studyUID);
    const response = await adminFetch(`${server.url}/api/v1/studies/${study.studyUID}/viewer-tokens`, { method: 'DELETE' });
    expect(response.status).toBe(204);
    for (const link of old) await expectRefused(await fetch(metadataUrl(server, study), { headers: bearer(link.token) }), /^the token was revoked$/);
    expect((await fetch(metadataUrl(server, other), { headers: bearer(otherLink.token) })).status).toBe(200);
    // Token times are whole seconds: a link of the same second as the revocation counts as issued before it.
    await sleep(1000 - (Date.now() % 1000) + 20);
    const fresh = await viewerLink(study.studyUID);
    expect((await fetch(metadataUrl(server, study), { headers: bearer(fresh.token) })).status).toBe(200);
  });
});

describe('signing keys', () => {
  it('are generated on first start into <storage>/secrets, readable by the server\'s user only', async () => {
    const file = SigningKeys.fileIn(server.dataDir);
    expect(file).toBe(path.join(server.dataDir, 'secrets', 'viewer-signing-keys.json'));
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
  });

  it('rotate while the server runs: old links keep working, new links carry the new kid', async () => {
    const before = await viewerLink(A.studyUID);
    const oldKid = decodeProtectedHeader(before.token).kid;
    const { kid, retired } = await SigningKeys.rotate(server.dataDir, (MAX_TTL + 5) * 1000);
    expect(kid).not.toBe(oldKid);
    expect(retired).toContain(oldKid);
    expect((await fs.stat(SigningKeys.fileIn(server.dataDir))).mode & 0o777).toBe(0o600);
    const after = await viewerLink(A.studyUID);
    expect(decodeProtectedHeader(after.token).kid).toBe(kid);
    expect((await fetch(metadataUrl(server, A), { headers: bearer(before.token) })).status).toBe(200);
    expect((await fetch(metadataUrl(server, A), { headers: bearer(after.token) })).status).toBe(200);
  });

  it('configured (PACS_VIEWER_SIGNING_KEY): no key file is written; tokens of the current and the previous key verify, others do not', async () => {
    await expect(fs.stat(SigningKeys.fileIn(lan.dataDir))).rejects.toThrow(/ENOENT/);
    const study = await storeStudy(lan);
    const kidOf = (b64: string) => createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64url').slice(0, 16);
    for (const configured of [CONFIGURED_KEY, PREVIOUS_KEY]) {
      const token = await craft(lan, study.studyUID, { secret: new Uint8Array(Buffer.from(configured, 'base64')), kid: kidOf(configured) });
      // Scoped to its study although the server lets anyone read: the token was accepted.
      expect(await studiesFound(await fetch(`${lan.dicomweb}/studies`, { headers: { ...bearer(token), ...DICOM_JSON } }))).toEqual([study.studyUID]);
    }
    const foreign = await craft(lan, study.studyUID, { secret: randomBytes(32) });
    await expectRefused(await fetch(`${lan.dicomweb}/studies`, { headers: bearer(foreign) }), /not signed by a key of this server/);
  });
});

describe('anonymous reads (PACS_ANONYMOUS_READ=true)', () => {
  let study: Study;
  beforeAll(async () => {
    study = await storeStudy(lan);
  });

  it('are said loudly at start-up, and only where they are on', () => {
    const warned = (s: RunningServer) => s.logs.some((line) => /^\{/.test(line) && JSON.parse(line).level === 40 && /PACS_ANONYMOUS_READ=true/.test(JSON.parse(line).msg));
    expect(warned(lan)).toBe(true);
    expect(warned(server)).toBe(false);
  });

  it('QIDO, WADO and study summaries answer without a credential', async () => {
    expect(await studiesFound(await fetch(`${lan.dicomweb}/studies?StudyInstanceUID=${study.studyUID}`, { headers: DICOM_JSON }))).toEqual([study.studyUID]);
    expect((await fetch(metadataUrl(lan, study), { headers: DICOM_JSON })).status).toBe(200);
    expect((await fetch(frameUrl(lan, study), { headers: FRAME_ACCEPT })).status).toBe(200);
    expect((await fetch(`${lan.url}/api/v1/studies/${study.studyUID}`)).status).toBe(200);
  });

  it('STOW, DELETE, links and administration still need a credential', async () => {
    await expectChallenge(await stowAs(lan, {}, [syntheticInstance({ studyUID: study.studyUID })]));
    await expectChallenge(await fetch(`${lan.dicomweb}/studies/${study.studyUID}`, { method: 'DELETE' }));
    await expectChallenge(await fetch(`${lan.url}/api/v1/studies/${study.studyUID}/viewer-url`));
    await expectChallenge(await fetch(`${lan.url}/api/v1/keys`));
    await expectChallenge(await fetch(`${lan.url}/api/v1/audit`));
  });

  it('a credential that is given must still be good', async () => {
    await expectRefused(await fetch(metadataUrl(lan, study), { headers: bearer('pacs_not-a-key') }), /not known/);
  });

  it('are audited as "anonymous"', async () => {
    const requestId = randomUUID();
    expect((await fetch(metadataUrl(lan, study), { headers: { 'X-Request-Id': requestId, ...DICOM_JSON } })).status).toBe(200);
    const events = (await (await adminFetch(`${lan.url}/api/v1/audit?credential=anonymous`)).json()) as any[];
    expect(events.find((e) => e.requestId === requestId)).toMatchObject({ credential: 'anonymous', studyUid: study.studyUID, status: 200 });
  });
});

describe('the audit trail', () => {
  let probe: { id: string; key: string };
  let study: Study;
  let between: string;
  let second: Study;
  const ids = {
    ...{ query: randomUUID(), frame: randomUUID(), refused: randomUUID(), link: randomUUID(), viewer: randomUUID(), viewerSearch: randomUUID() },
    ...{ none: randomUUID(), options: randomUUID(), health: randomUUID(), stow: randomUUID() },
  };

  beforeAll(async () => {
    probe = await createKey(server, 'read');
    study = await storeStudy(server);
    const as = (id: string, extra: Auth = {}) => ({ 'X-Request-Id': id, ...bearer(probe.key), ...extra });
    expect((await fetch(`${server.dicomweb}/studies?PatientID=${study.patientID}&token=${probe.key}`, { headers: { 'X-Request-Id': ids.query, ...DICOM_JSON } })).status).toBe(200);
    await sleep(5);
    between = new Date().toISOString();
    await sleep(5);
    expect((await fetch(frameUrl(server, study), { headers: as(ids.frame, FRAME_ACCEPT) })).status).toBe(200);
    expect((await stowAs(server, as(ids.refused), [syntheticInstance({ studyUID: study.studyUID })])).status).toBe(403);
    const link = await (await adminFetch(`${server.url}/api/v1/viewer-url?accession=${study.accession}`, { headers: { 'X-Request-Id': ids.link } })).json();
    const token = new URL(link.viewer_url).searchParams.get('token')!;
    secretsUsed.add(token);
    expect((await fetch(`${metadataUrl(server, study)}?token=${token}`, { headers: { 'X-Request-Id': ids.viewer, ...DICOM_JSON } })).status).toBe(200);
    expect((await fetch(`${server.dicomweb}/studies`, { headers: { 'X-Request-Id': ids.viewerSearch, ...bearer(token), ...DICOM_JSON } })).status).toBe(200);
    expect((await fetch(metadataUrl(server, study), { headers: { 'X-Request-Id': ids.none } })).status).toBe(401);
    second = { ...study, studyUID: newUid() };
    const twoStudies = [syntheticInstance({ studyUID: study.studyUID, seriesUID: study.seriesUID }), syntheticInstance({ studyUID: second.studyUID })];
    expect((await stowAs(server, { ...AS_ADMIN, 'X-Request-Id': ids.stow }, twoStudies)).status).toBe(200);
    await fetch(metadataUrl(server, study), { method: 'OPTIONS', headers: { 'X-Request-Id': ids.options, Origin: 'https://emr.example', 'Access-Control-Request-Method': 'GET' } });
    await fetch(`${server.url}/healthz`, { headers: { 'X-Request-Id': ids.health } });
  });

  const byRequest = (events: any[], id: string) => events.filter((e) => e.requestId === id);

  it('records when, who, from where, what and the outcome of each request, without the token in the query', async () => {
    const events = await audit(`credential=key:${probe.id}`);
    const [query] = byRequest(events, ids.query);
    expect(query).toEqual({
      at: expect.any(String),
      credential: `key:${probe.id}`,
      ip: expect.stringMatching(/127\.0\.0\.1$/),
      method: 'GET',
      path: '/dicom-web/studies',
      query: `PatientID=${study.patientID}`,
      studyUid: null,
      seriesUid: null,
      sopUid: null,
      status: 200,
      requestId: ids.query,
    });
    expect(Math.abs(Date.parse(query.at) - Date.now())).toBeLessThan(60_000);
    expect(byRequest(events, ids.frame)[0]).toMatchObject({ studyUid: study.studyUID, seriesUid: study.seriesUID, sopUid: study.sops[0], status: 200, query: null });
    expect(byRequest(events, ids.refused)[0]).toMatchObject({ method: 'POST', path: '/dicom-web/studies', status: 403 });
  });

  it('names viewer tokens by their jti, a request without an accepted credential as "none"', async () => {
    const [viewer] = byRequest(await audit(`study=${study.studyUID}`), ids.viewer);
    expect(viewer.credential).toMatch(/^token:[0-9a-f-]{36}$/);
    expect(viewer.query).toBeNull();
    const [none] = byRequest(await audit('credential=none'), ids.none);
    expect(none).toMatchObject({ credential: 'none', status: 401, studyUid: study.studyUID });
  });

  it('names a refused credential by what it claims: a revoked key by its id, a revoked token by its jti', async () => {
    const doomed = await createKey(server, 'read');
    expect((await adminFetch(`${server.url}/api/v1/keys/${doomed.id}`, { method: 'DELETE' })).status).toBe(204);
    const link = await viewerLink(study.studyUID);
    // Used once first, so that the server holds it as verified: the revocation must still reach it.
    expect((await fetch(metadataUrl(server, study), { headers: bearer(link.token) })).status).toBe(200);
    expect((await adminFetch(`${server.url}/api/v1/viewer-tokens/${link.jti}`, { method: 'DELETE' })).status).toBe(204);
    const [keyId, tokenId, junkId] = [randomUUID(), randomUUID(), randomUUID()];
    expect((await fetch(metadataUrl(server, study), { headers: { 'X-Request-Id': keyId, ...bearer(doomed.key) } })).status).toBe(401);
    expect((await fetch(metadataUrl(server, study), { headers: { 'X-Request-Id': tokenId, ...bearer(link.token) } })).status).toBe(401);
    expect((await fetch(metadataUrl(server, study), { headers: { 'X-Request-Id': junkId, ...bearer('no-such-key-0123456789') } })).status).toBe(401);
    const events = await audit(`study=${study.studyUID}`);
    expect(byRequest(events, keyId)[0]).toMatchObject({ credential: `rejected:key:${doomed.id}`, status: 401 });
    expect(byRequest(events, tokenId)[0]).toMatchObject({ credential: `rejected:token:${link.jti}`, status: 401 });
    expect(byRequest(events, junkId)[0]).toMatchObject({ credential: 'rejected:key', status: 401 });
  });

  it('records a request whose path names no study under each study it touched: a STOW, a viewer token\'s search', async () => {
    expect(byRequest(await audit(`study=${study.studyUID}`), ids.stow)).toHaveLength(1);
    expect(byRequest(await audit(`study=${second.studyUID}`), ids.stow)).toHaveLength(1);
    expect(byRequest(await audit(`study=${study.studyUID}`), ids.viewerSearch)[0]).toMatchObject({ path: '/dicom-web/studies', credential: expect.stringMatching(/^token:/) });
  });

  it('filters by study, and records a link asked for by accession under its study', async () => {
    const events = await audit(`study=${study.studyUID}`);
    expect(events.length).toBeGreaterThanOrEqual(4);
    expect(events.every((e) => e.studyUid === study.studyUID)).toBe(true);
    expect(byRequest(events, ids.link)[0]).toMatchObject({ credential: expect.stringMatching(/^key:/), path: '/api/v1/viewer-url', query: `accession=${study.accession}`, status: 200 });
  });

  it('filters by time, newest first, and limits', async () => {
    const later = await audit(`credential=key:${probe.id}&since=${between}`);
    expect(byRequest(later, ids.query)).toEqual([]);
    expect(byRequest(later, ids.frame)).toHaveLength(1);
    const earlier = await audit(`credential=key:${probe.id}&until=${between}`);
    expect(byRequest(earlier, ids.query)).toHaveLength(1);
    expect(byRequest(earlier, ids.frame)).toEqual([]);
    const all = await audit(`credential=key:${probe.id}`);
    expect(all.map((e) => e.requestId)).toEqual([ids.refused, ids.frame, ids.query]);
    const times = all.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect((await audit(`credential=key:${probe.id}&limit=1`)).map((e) => e.requestId)).toEqual([ids.refused]);
  });

  it('leaves out OPTIONS and /healthz', async () => {
    const events = await audit('limit=10000');
    expect(byRequest(events, ids.options)).toEqual([]);
    expect(byRequest(events, ids.health)).toEqual([]);
    expect(byRequest(events, ids.none)).toHaveLength(1);
  });

  it('refuses a bad filter with 400', async () => {
    for (const query of ['since=yesterday', 'limit=-1', 'study=not-a-uid']) {
      expect((await adminFetch(`${server.url}/api/v1/audit?${query}`)).status, query).toBe(400);
    }
  });
});

describe('study summaries', () => {
  it('give a study as plain JSON', async () => {
    const response = await fetch(`${server.url}/api/v1/studies/${A.studyUID}`, { headers: bearer(keys['viewer-links'].key) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      study_uid: A.studyUID,
      patient_name: 'Doe^Jane',
      patient_id: A.patientID,
      patient_birth_date: '19700101',
      patient_sex: 'F',
      accession_number: A.accession,
      study_date: '20240115',
      study_time: '101530',
      study_description: 'CT study',
      modalities: ['CT'],
      series_count: 1,
      instance_count: 2,
    });
  });

  it('list a patient\'s or an order\'s studies; one of accession or patient_id is required', async () => {
    const byAccession = await (await fetch(`${server.url}/api/v1/studies?accession=${B.accession}`, { headers: bearer(keys.read.key) })).json();
    expect(byAccession.map((s: any) => s.study_uid)).toEqual([B.studyUID]);
    const byPatient = await (await fetch(`${server.url}/api/v1/studies?patient_id=${A.patientID}`, { headers: bearer(keys.read.key) })).json();
    expect(byPatient.map((s: any) => s.study_uid)).toEqual([A.studyUID]);
    const neither = await fetch(`${server.url}/api/v1/studies`, { headers: bearer(keys.read.key) });
    expect(neither.status).toBe(400);
    expect((await neither.json()).detail).toMatch(/accession or patient_id/);
  });

  it('are 404 for a study that is not stored', async () => {
    const response = await adminFetch(`${server.url}/api/v1/studies/${newUid()}`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual(NO_SUCH_STUDY);
  });
});

describe('CORS', () => {
  it('a 401 to a browser still carries Access-Control-Allow-Origin and exposes WWW-Authenticate', async () => {
    const response = await fetch(metadataUrl(server, A), { headers: { Origin: 'https://emr.example' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('access-control-expose-headers')?.split(',').map((h) => h.trim().toLowerCase())).toContain('www-authenticate');
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="pacs-lite"');
  });

  it('a refused token too', async () => {
    const response = await fetch(metadataUrl(server, A), { headers: { Origin: 'https://emr.example', ...bearer('a.b.c') } });
    expect(response.status).toBe(401);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  });

  it('a preflight needs no credential and allows the Authorization header', async () => {
    const response = await fetch(metadataUrl(server, A), { method: 'OPTIONS', headers: { Origin: 'https://emr.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' } });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
  });
});

describe('secrets stay out of the logs', () => {
  it('no key or token sent in a header, in Basic or in ?token= appears in the server\'s log', async () => {
    const requestId = randomUUID();
    const { token } = await viewerLink(A.studyUID);
    await fetch(`${metadataUrl(server, A)}?token=${token}`, { headers: { 'X-Request-Id': requestId } });
    await fetch(`${metadataUrl(server, A)}?token=${keys.read.key}`);
    await fetch(metadataUrl(server, A), { headers: basic('x', keys.read.key) });
    await fetch(metadataUrl(server, A), { headers: bearer(token) });
    await sleep(200);
    const logs = [server.logs, lan.logs].flat().join('\n');
    // The control: requests are logged, so an absent secret is not an absent log.
    expect(logs).toContain(requestId);
    expect(secretsUsed.size).toBeGreaterThan(30);
    // A JWS's first part is a header common to all; its signature is what makes it one token.
    const signatureOf = (secret: string) => secret.split('.')[2] ?? '';
    const leaked = [...secretsUsed].filter((secret) => logs.includes(secret) || (signatureOf(secret).length > 20 && logs.includes(signatureOf(secret))));
    expect(leaked).toEqual([]);
  });
});

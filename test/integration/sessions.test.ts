import fs from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { makeCertificate } from '../helpers/certificate.js';
import { adminFetch, startServer, stowBody, type RunningServer } from '../helpers/server.js';
import { createUser, postForm, sessionCookie, signedInUser } from '../helpers/staff.js';

/** Sessions of staff signed in at /login (issue 14): their cookie, their end, their origin, their replicas, their trail. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EVIL = 'https://evil.example';

type AuditRow = { credential: string; method: string; path: string; status: number; studyUid: string | null };

async function auditOf(server: RunningServer, credential: string): Promise<AuditRow[]> {
  const answer = await adminFetch(`${server.url}/api/v1/audit?credential=${encodeURIComponent(credential)}&limit=1000`);
  expect(answer.status).toBe(200);
  return answer.json();
}

describe('a session', () => {
  let server: RunningServer;
  const password: Record<string, string> = {};
  // Short lives, so that their ends can be watched.
  const IDLE_MS = 3000;
  const MAX_AGE_MS = 8000;

  beforeAll(async () => {
    server = await startServer({ env: { PACS_SESSION_IDLE_TIMEOUT: `${IDLE_MS / 1000}s`, PACS_SESSION_MAX_AGE: `${MAX_AGE_MS / 1000}s` } });
    for (const [login, role] of [['dr.reader', 'read'], ['it.admin', 'admin']] as const) password[login] = (await signedInUser(server, login, [role])).password;
  }, 120_000);
  afterAll(() => server?.stop());

  const signIn = async (login: string) => sessionCookie(await postForm(`${server.url}/login`, { login, password: password[login]! }));
  const studies = (cookie: string) => fetch(`${server.dicomweb}/studies`, { headers: { Cookie: cookie } }).then((r) => r.status);

  it('comes in an HttpOnly, SameSite=Lax cookie for the whole site that lives no longer than the session, not Secure over HTTP', async () => {
    const answer = await postForm(`${server.url}/login`, { login: 'dr.reader', password: password['dr.reader']! });
    expect(answer.status).toBe(303);
    const attributes = answer.headers.get('set-cookie')!.split(';').map((a) => a.trim().toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['httponly', 'samesite=lax', 'path=/', `max-age=${MAX_AGE_MS / 1000}`]));
    expect(attributes).not.toContain('secure');
    expect(answer.headers.get('cache-control')).toBe('no-store');
  });

  it('is refused when its cookie names no session', async () => {
    expect(await studies('pacs_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).toBe(401);
  });

  it('ends after the idle timeout without a request', async () => {
    const cookie = await signIn('dr.reader');
    expect(await studies(cookie)).toBe(200);
    await sleep(IDLE_MS + 500);
    expect(await studies(cookie)).toBe(401);
  });

  it('lives on while used, past the idle timeout, and ends at its absolute lifetime all the same', async () => {
    const before = Date.now();
    const cookie = await signIn('dr.reader');
    const signedIn = Date.now();
    // A request every second keeps it from going idle; two idle timeouts on, it still works.
    while (Date.now() - before < 2 * IDLE_MS) {
      expect(await studies(cookie)).toBe(200);
      await sleep(1000);
    }
    expect(Date.now() - before).toBeLessThan(MAX_AGE_MS);
    expect(await studies(cookie)).toBe(200);
    while (Date.now() - signedIn < MAX_AGE_MS + 300) {
      await studies(cookie);
      await sleep(1000);
    }
    expect(await studies(cookie)).toBe(401);
  }, 30_000);

  it('ends at sign-out on the server: the old cookie sent again is refused', async () => {
    const cookie = await signIn('dr.reader');
    expect(await studies(cookie)).toBe(200);
    const out = await postForm(`${server.url}/logout`, {}, { Cookie: cookie });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(/^pacs_session=;.*Max-Age=0/i);
    // A browser would forget it; a copy of it kept elsewhere is worth nothing.
    expect(await studies(cookie)).toBe(401);
    expect((await fetch(`${server.url}/api/v1/studies`, { headers: { Cookie: cookie } })).status).toBe(401);
  });

  describe('changes only from our own pages', () => {
    let cookie: string;
    const studyUID = newUid();
    const stowWith = (headers: Record<string, string>) => {
      const { body, contentType } = stowBody([syntheticInstance({ studyUID, sopInstanceUID: newUid() })]);
      return fetch(`${server.dicomweb}/studies`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': contentType, Accept: 'application/dicom+json', ...headers }, body: new Uint8Array(body) });
    };
    const stored = async () => (await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${studyUID}`)).json()).length;
    const newKey = (headers: Record<string, string>) =>
      fetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ name: 'made by a page', role: 'read' }) });
    const FOREIGN: Array<Record<string, string>> = [{ Origin: EVIL }, { 'Sec-Fetch-Site': 'cross-site' }, { 'Sec-Fetch-Site': 'same-site' }];

    beforeAll(async () => {
      cookie = await signIn('it.admin');
    });

    async function expectRefused(answer: Response) {
      expect(answer.status).toBe(403);
      const { detail } = await answer.json();
      expect(detail).toMatch(/this server's own pages, not from another site/);
    }

    it('refuses a store from another site, and takes it from ours', async () => {
      for (const foreign of FOREIGN) await expectRefused(await stowWith(foreign));
      expect(await stored()).toBe(0);
      expect((await stowWith({ Origin: server.url })).status).toBe(200);
      expect((await stowWith({ 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200);
      expect(await stored()).toBe(1);
    });

    it('refuses a delete from another site, and takes it from ours', async () => {
      const remove = (headers: Record<string, string>) => fetch(`${server.dicomweb}/studies/${studyUID}?reason=test+deletion`, { method: 'DELETE', headers: { Cookie: cookie, ...headers } });
      for (const foreign of FOREIGN) await expectRefused(await remove(foreign));
      expect(await stored()).toBe(1);
      expect((await remove({ Origin: server.url })).status).toBe(200);
      expect(await stored()).toBe(0);
    });

    it('refuses a change of access through /api/v1 from another site, and takes it from ours', async () => {
      for (const foreign of FOREIGN) await expectRefused(await newKey(foreign));
      const made = await newKey({ Origin: server.url });
      expect(made.status).toBe(201);
      const { id } = await made.json();
      const revoke = (headers: Record<string, string>) => fetch(`${server.url}/api/v1/keys/${id}`, { method: 'DELETE', headers: { Cookie: cookie, ...headers } });
      for (const foreign of FOREIGN) await expectRefused(await revoke(foreign));
      expect((await revoke({ 'Sec-Fetch-Site': 'same-origin' })).status).toBe(204);
      const keys: Array<{ name: string; revoked_at: string | null }> = await (await adminFetch(`${server.url}/api/v1/keys`)).json();
      expect(keys.filter((k) => k.name === 'made by a page').map((k) => k.revoked_at !== null)).toEqual([true]);
    });

    it('records every request of the session under the user, refused ones included', async () => {
      const trail = await auditOf(server, 'user:it.admin');
      const seen = (method: string, path: string, status: number) => trail.filter((e) => e.method === method && e.path === path && e.status === status).length;
      expect(seen('POST', '/dicom-web/studies', 403)).toBe(FOREIGN.length);
      expect(seen('POST', '/dicom-web/studies', 200)).toBe(2);
      expect(seen('DELETE', `/dicom-web/studies/${studyUID}`, 403)).toBe(FOREIGN.length);
      expect(seen('DELETE', `/dicom-web/studies/${studyUID}`, 200)).toBe(1);
      expect(seen('POST', '/api/v1/keys', 201)).toBe(1);
      // A refused store names no study: it stored into none.
      const ofStudy = trail.filter((e) => e.studyUid === studyUID).map((e) => `${e.method} ${e.status}`);
      expect(ofStudy.sort()).toEqual(['DELETE 200', ...FOREIGN.map(() => 'DELETE 403'), 'POST 200', 'POST 200']);
    });
  });

  it('records sign-ins and sign-outs, and failed sign-ins under the name tried', async () => {
    await postForm(`${server.url}/login`, { login: 'dr.reader', password: 'not the password' });
    await postForm(`${server.url}/login`, { login: 'dr.nobody', password: 'not the password' });
    const cookie = await signIn('dr.reader');
    await postForm(`${server.url}/logout`, {}, { Cookie: cookie });
    const ok = await auditOf(server, 'user:dr.reader');
    expect(ok.some((e) => e.method === 'POST' && e.path === '/login' && e.status === 303)).toBe(true);
    expect(ok.some((e) => e.method === 'POST' && e.path === '/logout' && e.status === 303)).toBe(true);
    expect(ok.some((e) => e.method === 'GET' && e.path === '/dicom-web/studies' && e.status === 200)).toBe(true);
    for (const tried of ['dr.reader', 'dr.nobody']) {
      const refused = await auditOf(server, `rejected:user:${tried}`);
      expect(refused.map((e) => `${e.method} ${e.path} ${e.status}`)).toContain('POST /login 401');
    }
  });
});

describe('failed sign-ins from one address', () => {
  let server: RunningServer;
  let password: string;

  beforeAll(async () => {
    // The guesses come through a trusted proxy from another address than the administrator's, who checks the trail.
    server = await startServer({ env: { PACS_AUTH_FAILURES_PER_MINUTE: '3', PACS_TRUSTED_PROXIES: '127.0.0.1' } });
    password = await createUser(server, 'dr.chase', ['read']);
  }, 60_000);
  afterAll(() => server?.stop());

  it('lock the address out, for every account, right passwords included, and are recorded', async () => {
    const guesser = { 'X-Forwarded-For': '192.0.2.7' };
    for (const login of ['dr.foreman', 'dr.taub', 'dr.kutner']) expect((await postForm(`${server.url}/login`, { login, password: 'a guess' }, guesser)).status).toBe(401);
    const locked = await postForm(`${server.url}/login`, { login: 'dr.chase', password }, guesser);
    expect(locked.status).toBe(429);
    expect(locked.headers.get('set-cookie')).toBeNull();
    const trail = await auditOf(server, 'rejected:user:dr.chase');
    expect(trail.map((e) => `${e.method} ${e.path} ${e.status}`)).toEqual(['POST /login 429']);
    // Another address signs in as ever.
    expect((await postForm(`${server.url}/login`, { login: 'dr.chase', password })).status).toBe(303);
  });
});

describe('a session over HTTPS', () => {
  let server: RunningServer;
  let dir: string;
  let ca: Buffer;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-tls-'));
    const { cert, key } = makeCertificate(dir);
    ca = await fs.readFile(cert);
    server = await startServer({ env: { PACS_TLS_CERT: cert, PACS_TLS_KEY: key } });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('comes in a Secure cookie', async () => {
    const password = await createUser(server, 'dr.cameron', ['read']);
    const body = new URLSearchParams({ login: 'dr.cameron', password }).toString();
    const cookie = await new Promise<string[] | undefined>((resolve, reject) => {
      https
        .request(`${server.url}/login`, { method: 'POST', ca, headers: { Origin: server.url, 'Content-Type': 'application/x-www-form-urlencoded' } }, (res) => {
          res.resume();
          expect(res.statusCode).toBe(303);
          resolve(res.headers['set-cookie']);
        })
        .on('error', reject)
        .end(body);
    });
    const attributes = cookie![0]!.split(';').map((a) => a.trim().toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['secure', 'httponly', 'samesite=lax', 'path=/']));
  });
});

describe('sessions on two replicas over one index', () => {
  let a: RunningServer;
  let b: RunningServer;

  beforeAll(async () => {
    a = await startServer();
    // The same data folder: the same index, and on other projects the same database and bucket (test/helpers/backend.ts).
    b = await startServer({ dataDir: a.dataDir });
  }, 120_000);
  afterAll(() => Promise.all([a?.stop(), b?.stop()]));

  it('signs in on one and is known to the other, and a sign-out on either ends it on both', async () => {
    const { cookie } = await signedInUser(a, 'dr.kutner', ['read']);
    const on = (server: RunningServer) => fetch(`${server.dicomweb}/studies`, { headers: { Cookie: cookie } }).then((r) => r.status);
    expect(await on(a)).toBe(200);
    expect(await on(b)).toBe(200);
    expect((await postForm(`${b.url}/logout`, {}, { Cookie: cookie })).status).toBe(303);
    expect(await on(a)).toBe(401);
    expect(await on(b)).toBe(401);
  });
});

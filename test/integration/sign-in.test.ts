import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { startServer, type RunningServer } from '../helpers/server.js';

/** Staff sign in with a password and read with the session cookie (issue 14). */
describe('sign-in', () => {
  let server: RunningServer;
  let password: string;

  beforeAll(async () => {
    server = await startServer();
    const made = await cli(['users', 'create', '--role', 'read', '--name', 'dr.house'], server.dataDir, server.backend.env);
    expect(made.code, made.stderr).toBe(0);
    password = /^\s{4}(\S+)$/m.exec(made.stdout)![1]!;
  }, 60_000);
  afterAll(() => server?.stop());

  const form = (fields: Record<string, string>, origin = server.url) =>
    fetch(`${server.url}/login`, { method: 'POST', redirect: 'manual', headers: { Origin: origin, 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });

  it('refuses a wrong password without saying which of name or password was wrong', async () => {
    const wrongPassword = await form({ login: 'dr.house', password: 'not-the-password' });
    const unknownName = await form({ login: 'nobody', password });
    expect(wrongPassword.status).toBe(401);
    expect(unknownName.status).toBe(401);
    expect(await wrongPassword.text()).toContain('the name or the password is wrong');
    expect(wrongPassword.headers.get('set-cookie')).toBeNull();
  });

  it('signs in with an HttpOnly SameSite=Lax cookie, reads with it, refuses a cross-origin delete, and ends at sign-out', async () => {
    const first = await form({ login: 'dr.house', password, next: '/' });
    expect(first.status).toBe(303);
    expect(first.headers.get('location')).toMatch(/^\/account\/password/);
    let cookie = first.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).not.toMatch(/Secure/i);
    let session = cookie.split(';')[0]!;
    // The one-time password allows nothing but changing it.
    expect((await fetch(`${server.dicomweb}/studies`, { headers: { Cookie: session } })).status).toBe(403);

    const changed = await fetch(`${server.url}/account/password`, {
      method: 'POST', redirect: 'manual',
      headers: { Cookie: session, Origin: server.url, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ current: password, password: 'a long new password', repeat: 'a long new password', next: '/' }),
    });
    expect(changed.status).toBe(303);
    cookie = changed.headers.get('set-cookie')!;
    session = cookie.split(';')[0]!;

    expect((await fetch(`${server.dicomweb}/studies`, { headers: { Cookie: session } })).status).toBe(200);
    expect((await fetch(`${server.dicomweb}/studies`)).status).toBe(401);
    const foreign = await fetch(`${server.dicomweb}/studies/1.2.3`, { method: 'DELETE', headers: { Cookie: session, Origin: 'https://evil.example' } });
    expect(foreign.status).toBe(403);

    await fetch(`${server.url}/logout`, { method: 'POST', redirect: 'manual', headers: { Cookie: session, Origin: server.url } });
    expect((await fetch(`${server.dicomweb}/studies`, { headers: { Cookie: session } })).status).toBe(401);
  });

  it('ends a disabled user\'s session at once', async () => {
    const made = await cli(['users', 'create', '--role', 'read', '--name', 'dr.cuddy'], server.dataDir, server.backend.env);
    const once = /^\s{4}(\S+)$/m.exec(made.stdout)![1]!;
    const first = await form({ login: 'dr.cuddy', password: once });
    const session = first.headers.get('set-cookie')!.split(';')[0]!;
    const changed = await fetch(`${server.url}/account/password`, {
      method: 'POST', redirect: 'manual',
      headers: { Cookie: session, Origin: server.url, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ current: once, password: 'another long password', repeat: 'another long password' }),
    });
    const signedIn = changed.headers.get('set-cookie')!.split(';')[0]!;
    expect((await fetch(`${server.dicomweb}/studies`, { headers: { Cookie: signedIn } })).status).toBe(200);
    expect((await cli(['users', 'disable', 'dr.cuddy'], server.dataDir, server.backend.env)).code).toBe(0);
    expect((await fetch(`${server.dicomweb}/studies`, { headers: { Cookie: signedIn } })).status).toBe(401);
  });

  it('sends a browser without a session from the viewer to /login and back', async () => {
    const page = await fetch(`${server.url}/viewer?StudyInstanceUIDs=1.2.3`, { redirect: 'manual', headers: { Accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe(`/login?next=${encodeURIComponent('/viewer?StudyInstanceUIDs=1.2.3')}`);
  });
});

describe('sign-in lockout', () => {
  let server: RunningServer;
  let password: string;

  beforeAll(async () => {
    server = await startServer({ env: { PACS_SIGN_IN_LOCKOUT_AFTER: '2', PACS_SIGN_IN_LOCKOUT: '2s' } });
    const made = await cli(['users', 'create', '--role', 'read', '--name', 'dr.wilson'], server.dataDir, server.backend.env);
    password = /^\s{4}(\S+)$/m.exec(made.stdout)![1]!;
  }, 60_000);
  afterAll(() => server?.stop());

  const signIn = (pw: string) =>
    fetch(`${server.url}/login`, { method: 'POST', redirect: 'manual', headers: { Origin: server.url, 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ login: 'dr.wilson', password: pw }) });

  it('locks an account after failures in a row, even to its right password, until the lockout ends', async () => {
    expect((await signIn('wrong one')).status).toBe(401);
    expect((await signIn('wrong two')).status).toBe(401);
    expect((await signIn(password)).status).toBe(429);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await signIn(password)).status).toBe(303);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { startServer, type RunningServer } from '../helpers/server.js';
import { createUser, postForm } from '../helpers/staff.js';

/** Staff sign in with a password and read with the session cookie (issue 14). */
describe('sign-in', () => {
  let server: RunningServer;
  let password: string;

  beforeAll(async () => {
    server = await startServer();
    password = await createUser(server, 'dr.house', ['read']);
  }, 60_000);
  afterAll(() => server?.stop());

  const form = (fields: Record<string, string>) => postForm(`${server.url}/login`, fields);

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
    const once = await createUser(server, 'dr.cuddy', ['read']);
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
    password = await createUser(server, 'dr.wilson', ['read']);
  }, 60_000);
  afterAll(() => server?.stop());

  const signIn = (pw: string, login = 'dr.wilson') => postForm(`${server.url}/login`, { login, password: pw });

  it('locks an account after failures in a row, even to its right password, until the lockout ends', async () => {
    expect((await signIn('wrong one')).status).toBe(401);
    expect((await signIn('wrong two')).status).toBe(401);
    expect((await signIn(password)).status).toBe(429);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await signIn(password)).status).toBe(303);
  });

  it('answers a name no account has as it answers an account: refused, then locked out, in the same words', async () => {
    const answers = async (login: string) => {
      const seen: string[] = [];
      for (const guess of ['guess one', 'guess two', 'guess three']) {
        const answer = await signIn(guess, login);
        seen.push(`${answer.status} ${(await answer.text()).replaceAll(login, '<name>')}`);
      }
      return seen;
    };
    const ofAccount = await answers('dr.wilson');
    expect(ofAccount.map((a) => a.slice(0, 3))).toEqual(['401', '401', '429']);
    expect(await answers('dr.nobody')).toEqual(ofAccount);
  });
});

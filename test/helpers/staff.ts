import { expect } from 'vitest';
import { cli } from './cli.js';
import type { RunningServer } from './server.js';

/** A new account made with the CLI beside `server`, as an admin makes one; its one-time password. */
export async function createUser(server: RunningServer, login: string, roles: string[]): Promise<string> {
  const made = await cli(['users', 'create', ...roles.flatMap((r) => ['--role', r]), '--name', login], server.dataDir, server.backend.env);
  expect(made.code, made.stderr).toBe(0);
  return /^\s{4}(\S+)$/m.exec(made.stdout)![1]!;
}

/** The sign-in form sent as a browser on our own page sends it; `headers` may say otherwise. */
export function postForm(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { Origin: new URL(url).origin, 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields),
  });
}

/** `pacs_session=…` from a Set-Cookie, as a browser sends it back. */
export function sessionCookie(response: Response): string {
  const cookie = response.headers.get('set-cookie');
  expect(cookie, `no session cookie in a ${response.status} answer`).toMatch(/^pacs_session=/);
  return cookie!.split(';')[0]!;
}

/** Makes an account, signs in with its one-time password and replaces it: the session of a user who may work. */
export async function signedInUser(server: RunningServer, login: string, roles: string[]): Promise<{ cookie: string; password: string }> {
  const once = await createUser(server, login, roles);
  const first = await postForm(`${server.url}/login`, { login, password: once });
  expect(first.status).toBe(303);
  const password = `${login} has a long password`;
  const changed = await postForm(`${server.url}/account/password`, { current: once, password, repeat: password }, { Cookie: sessionCookie(first) });
  expect(changed.status).toBe(303);
  return { cookie: sessionCookie(changed), password };
}

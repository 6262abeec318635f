import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { startServer, type RunningServer } from '../helpers/server.js';
import { createUser, signedInUser } from '../helpers/staff.js';

/** `npm run cli -- users` beside a running server: roles, the last sign-in, and the last admin kept. */
describe('users on the command line', () => {
  let server: RunningServer;
  const users = (...args: string[]) => cli(['users', ...args], server.dataDir, server.backend.env);
  const studies = (cookie: string) => fetch(`${server.dicomweb}/studies`, { headers: { Cookie: cookie } }).then((r) => r.status);

  beforeAll(async () => {
    server = await startServer();
  }, 60_000);
  afterAll(() => server?.stop());

  it("changes a user's roles from their session's next request", async () => {
    const { cookie } = await signedInUser(server, 'tech.tina', ['upload']);
    expect(await studies(cookie)).toBe(403);
    const changed = await users('roles', 'tech.tina', '--role', 'upload,read');
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toContain('read, upload');
    expect(await studies(cookie)).toBe(200);
    const wrong = await users('roles', 'tech.tina', '--role', 'viewer-links');
    expect(wrong.code).toBe(2);
    expect(await studies(cookie)).toBe(200);
  });

  it('lists when each user last signed in', async () => {
    await createUser(server, 'dr.idle', ['read']);
    await signedInUser(server, 'dr.busy', ['read']);
    const listed = await users('list');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^LOGIN\s+DISPLAY NAME\s+ROLES\s+CREATED\s+LAST SIGN-IN\s+STATUS$/m);
    expect(listed.stdout).toMatch(/^dr\.idle\s.*\snever\s+must change password$/m);
    expect(listed.stdout).toMatch(/^dr\.busy\s.*\s\d{4}-\d{2}-\d{2} \d{2}:\d{2}\s+active$/m);
  });

  it('keeps an enabled admin: the only one may not be disabled or lose the role, one of two may', async () => {
    await createUser(server, 'it.ada', ['admin']);
    for (const args of [['disable', 'it.ada'], ['roles', 'it.ada', '--role', 'read']]) {
      const refused = await users(...args);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('only enabled administrator');
    }
    await createUser(server, 'it.bob', ['admin', 'read']);
    expect((await users('disable', 'it.ada')).code).toBe(0);
    expect((await users('roles', 'it.bob', '--role', 'read')).code).toBe(1);
  });
});

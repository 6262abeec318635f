import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { projectBackend } from '../helpers/backend.js';
import { cli } from '../helpers/cli.js';
import { AS_ADMIN, startServer, stow, type RunningServer } from '../helpers/server.js';

/** Creates a key with the CLI and reads back what it printed. */
async function createKey(dataDir: string, role: string, name: string, extra: string[] = []) {
  const out = await cli(['keys', 'create', '--role', role, '--name', name, ...extra], dataDir);
  expect(out.code, out.stderr).toBe(0);
  const key = /^\s+(pacs_[A-Za-z0-9_-]{32})$/m.exec(out.stdout)?.[1];
  const id = /^\s+id\s+([0-9a-f]{12})$/m.exec(out.stdout)?.[1];
  expect(key).toBeDefined();
  expect(id).toBeDefined();
  return { key: key!, id: id!, stdout: out.stdout };
}

const bearer = (credential: string) => ({ Authorization: `Bearer ${credential}` });

function jwsPart(token: string, part: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[part]!, 'base64url').toString('utf8'));
}

describe('command-line access management, beside a running server', () => {
  let server: RunningServer;
  let dataDir: string;
  let studyUid: string;

  const viewerToken = async () => {
    const res = await fetch(`${server.url}/api/v1/studies/${studyUid}/viewer-url`, { headers: AS_ADMIN });
    expect(res.status).toBe(200);
    return new URL((await res.json()).viewer_url).searchParams.get('token')!;
  };
  /** What the server answers a viewer token on a read of its study. */
  const readWith = async (token: string) => (await fetch(`${server.dicomweb}/studies/${studyUid}/series`, { headers: bearer(token) })).status;

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-access-'));
    server = await startServer({ dataDir, env: { PACS_VIEWER_URL: 'http://viewer.invalid' } });
    studyUid = '1.2.826.0.1.3680043.8.498.4242.1';
    expect((await stow(server.dicomweb, [syntheticInstance({ studyUID: studyUid })])).status).toBe(200);
  });

  afterAll(async () => {
    await server?.stop();
    if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('creates a key of each role that the running server accepts, with what that role may do', async () => {
    const read = await createKey(dataDir, 'read', 'Reading room 2');
    const upload = await createKey(dataDir, 'upload', 'CT scanner');
    const links = await createKey(dataDir, 'viewer-links', 'EMR', ['--expires', '30d']);
    const admin = await createKey(dataDir, 'admin', 'IT desk');
    expect(read.stdout).toMatch(/will not be shown again/);
    expect(read.stdout).toMatch(/^\s+role\s+read$/m);
    expect(read.stdout).toMatch(/^\s+name\s+Reading room 2$/m);
    expect(read.stdout).toMatch(/^\s+expires\s+never/m);
    const in30days = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    expect(links.stdout).toMatch(new RegExp(`^\\s+expires\\s+${in30days} \\d\\d:\\d\\d UTC \\(in 30 day`, 'm'));

    const qido = `${server.dicomweb}/studies`;
    expect((await fetch(qido, { headers: bearer(read.key) })).status).toBe(200);
    expect((await fetch(qido, { headers: bearer(upload.key) })).status).toBe(403);
    expect((await fetch(qido, { headers: bearer(links.key) })).status).toBe(403);
    expect((await stow(server.dicomweb, [syntheticInstance({ studyUID: studyUid })], undefined, bearer(upload.key))).status).toBe(200);
    expect((await stow(server.dicomweb, [syntheticInstance({ studyUID: studyUid })], undefined, bearer(read.key))).status).toBe(403);
    expect((await fetch(`${server.url}/api/v1/studies/${studyUid}/viewer-url`, { headers: bearer(links.key) })).status).toBe(200);
    expect((await fetch(`${server.url}/api/v1/keys`, { headers: bearer(links.key) })).status).toBe(403);
    expect((await fetch(`${server.url}/api/v1/keys`, { headers: bearer(admin.key) })).status).toBe(200);
  });

  it('lists keys as a table without their secrets, and a revoked key gets 401 at once', async () => {
    const doomed = await createKey(dataDir, 'read', 'Laptop that was stolen');
    const kept = await createKey(dataDir, 'read', 'Workstation 7');
    const qido = `${server.dicomweb}/studies`;
    expect((await fetch(qido, { headers: bearer(doomed.key) })).status).toBe(200);

    const before = await cli(['keys', 'list'], dataDir);
    expect(before.code).toBe(0);
    expect(before.stdout).toMatch(/^ID\s+ROLE\s+NAME\s+HINT\s+CREATED\s+EXPIRES\s+STATUS$/m);
    const row = before.stdout.split('\n').find((l) => l.startsWith(doomed.id))!;
    expect(row).toMatch(new RegExp(`^${doomed.id}\\s+read\\s+Laptop that was stolen\\s+${doomed.key.slice(0, 9)}…\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d\\s+never\\s+active$`));
    expect(before.stdout).not.toContain(doomed.key);
    expect(before.stdout).not.toContain(doomed.key.slice(9));
    expect(before.stdout).toMatch(/PACS_ADMIN_KEY/);

    const revoked = await cli(['keys', 'revoke', doomed.id], dataDir);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`Revoked API key ${doomed.id}`));
    const refused = await fetch(qido, { headers: bearer(doomed.key) });
    expect(refused.status).toBe(401);
    expect((await refused.json()).detail).toMatch(/revoked/);
    expect((await fetch(qido, { headers: bearer(kept.key) })).status).toBe(200);

    const after = await cli(['keys', 'list'], dataDir);
    expect(after.stdout.split('\n').find((l) => l.startsWith(doomed.id))).toMatch(/\srevoked$/);
    expect(after.stdout.split('\n').find((l) => l.startsWith(kept.id))).toMatch(/\sactive$/);

    const again = await cli(['keys', 'revoke', doomed.id], dataDir);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already revoked/);
    const unknown = await cli(['keys', 'revoke', '000000000000'], dataDir);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/No API key has the id "000000000000"/);

    // Changes made at the command line are in the audit trail, under the user who made them.
    const trail = await (await fetch(`${server.url}/api/v1/audit?credential=cli:${os.userInfo().username}`, { headers: AS_ADMIN })).json();
    const actions = trail.map((e: { method: string; path: string; query: string }) => `${e.method} ${e.path} ${e.query}`);
    expect(actions).toContain(`CLI keys create id=${doomed.id}&role=read`);
    expect(actions).toContain(`CLI keys revoke id=${doomed.id}`);
    expect(actions.filter((a: string) => a === `CLI keys revoke id=${doomed.id}`)).toHaveLength(1);
  });

  it('rotates the signing key while the server runs: earlier links still open, later ones carry the new kid', async () => {
    const before = await viewerToken();
    const oldKid = jwsPart(before, 0).kid;

    const rotated = await cli(['signing-key', 'rotate'], dataDir);
    expect(rotated.code, rotated.stderr).toBe(0);
    const newKid = /New viewer-link signing key (\S+):/.exec(rotated.stdout)?.[1];
    expect(newKid).toBeDefined();
    expect(newKid).not.toBe(oldKid);
    expect(rotated.stdout).toMatch(new RegExp(`^\\s+${oldKid}\\s+until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC$`, 'm'));

    const after = await viewerToken();
    expect(jwsPart(after, 0).kid).toBe(newKid);
    expect(await readWith(before)).toBe(200);
    expect(await readWith(after)).toBe(200);
  });

  it('refuses to rotate a configured signing key and says how to rotate it instead', async () => {
    const keyFile = path.join(dataDir, 'secrets', 'viewer-signing-keys.json');
    const before = await fs.readFile(keyFile, 'utf8');
    const out = await cli(['signing-key', 'rotate'], dataDir, { PACS_VIEWER_SIGNING_KEY: Buffer.alloc(32, 7).toString('base64') });
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/PACS_VIEWER_SIGNING_KEY_PREVIOUS to the current value of PACS_VIEWER_SIGNING_KEY/);
    expect(await fs.readFile(keyFile, 'utf8')).toBe(before);
  });

  it('revokes one viewer token by its jti, and every earlier token of a study', async () => {
    const doomed = await viewerToken();
    const kept = await viewerToken();
    expect(await readWith(doomed)).toBe(200);
    const jti = jwsPart(doomed, 1).jti as string;

    const out = await cli(['tokens', 'revoke', jti], dataDir);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`Revoked viewer token ${jti}`);
    const refused = await fetch(`${server.dicomweb}/studies/${studyUid}/series`, { headers: bearer(doomed) });
    expect(refused.status).toBe(401);
    expect((await refused.json()).detail).toMatch(/revoked/);
    expect(await readWith(kept)).toBe(200);

    // The IT person often has the link, not the id: the link works as well.
    const linked = await fetch(`${server.url}/api/v1/studies/${studyUid}/viewer-url`, { headers: AS_ADMIN });
    const link = (await linked.json()).viewer_url as string;
    const byLink = await cli(['tokens', 'revoke', link], dataDir);
    expect(byLink.code, byLink.stderr).toBe(0);
    expect(byLink.stdout).toContain(`study    ${studyUid}`);
    expect(await readWith(new URL(link).searchParams.get('token')!)).toBe(401);

    const study = await cli(['tokens', 'revoke-study', studyUid], dataDir);
    expect(study.code, study.stderr).toBe(0);
    expect(await readWith(kept)).toBe(401);
  });

  // Arguments are checked before any store or index is opened, alike on every backend: checked once, on the default one.
  it.runIf(projectBackend().name === 'fs+sqlite')('answers bad usage with exit code 2 and the usage', async () => {
    const badRole = await cli(['keys', 'create', '--role', 'superuser', '--name', 'x'], dataDir);
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toMatch(/viewer-links, upload, read, admin/);
    const noName = await cli(['keys', 'create', '--role', 'read'], dataDir);
    expect(noName.code).toBe(2);
    expect(noName.stderr).toMatch(/--name/);
    expect(noName.stderr).toMatch(/viewer-links\|upload\|read\|admin/);
    expect((await cli(['keys', 'create', '--role', 'read', '--name', 'x', '--expires', 'soon'], dataDir)).code).toBe(2);
    expect((await cli(['keys', 'create', '--role', 'read', '--name', 'x', '--colour', 'red'], dataDir)).code).toBe(2);
    expect((await cli(['keys', 'revoke'], dataDir)).code).toBe(2);
    expect((await cli(['keys'], dataDir)).code).toBe(2);
    expect((await cli(['tokens', 'revoke', 'not-a-token'], dataDir)).code).toBe(2);
    expect((await cli(['tokens', 'revoke-study', '1.02.3'], dataDir)).code).toBe(2);
    expect((await cli(['signing-key', 'rotate', 'now'], dataDir)).code).toBe(2);
    expect((await cli([], dataDir)).code).toBe(2);

    const help = await cli(['help'], dataDir);
    expect(help.code).toBe(0);
    for (const command of ['keys create', 'keys list', 'keys revoke', 'tokens revoke', 'tokens revoke-study', 'signing-key rotate']) expect(help.stdout).toContain(command);
  });

  it('leaves no spool folder behind', async () => {
    // Only the server's own spool folder: the CLI runs beside it without leaving one of its own.
    expect(await fs.readdir(path.join(dataDir, 'tmp'))).toEqual([String(server.process.pid)]);
  });

  // A SQLite index is found by its folder, so a mistyped folder would get a fresh index of its own.
  it.skipIf(projectBackend().postgres)('refuses a storage folder that holds no index instead of making a second one', async () => {
    const empty = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-empty-'));
    const out = await cli(['keys', 'create', '--role', 'admin', '--name', 'x'], empty);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/PACS_STORAGE_DIR/);
    expect(await fs.readdir(empty)).toEqual([]);
    await fs.rm(empty, { recursive: true });
  });

  // A Postgres index is found by its URL: a mistyped one names a database that is not there.
  it.runIf(projectBackend().postgres)('refuses a database URL that names no database, in a line, and makes nothing', async () => {
    const empty = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-empty-'));
    const wrong = new URL(projectBackend().postgres!.url);
    wrong.pathname = '/pacs_no_such_database';
    const out = await cli(['keys', 'create', '--role', 'admin', '--name', 'x'], empty, { PACS_DATABASE_URL: wrong.toString() });
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/database/);
    expect(out.stderr).not.toMatch(/\n\s+at /);
    expect(out.stderr).not.toContain(decodeURIComponent(wrong.password));
    expect(await fs.readdir(empty)).toEqual([]);
    await fs.rm(empty, { recursive: true });
  });
});
